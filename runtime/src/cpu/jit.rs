//! Memory for the cpu device: executable pages holding an artifact's machine code, and 64-byte aligned
//! buffers for weights and the activation arena.

use std::alloc::{alloc_zeroed, dealloc, Layout};

/// A kernel function of a `cpu` artifact: computes iterations `lo..hi` of its parallel dimension over
/// the buffers whose base pointers `bufs` lists.
pub type KernelFn = unsafe extern "C" fn(bufs: *const *mut f32, lo: i64, hi: i64);

/// A zeroed, 64-byte aligned byte buffer.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain owned memory.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        if len == 0 {
            return AlignedBuf { ptr: std::ptr::null_mut(), len: 0 };
        }
        let layout = Layout::from_size_align(len, 64).expect("buffer size overflows");
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, len }
    }

    pub fn from_bytes(b: &[u8]) -> AlignedBuf {
        let mut a = AlignedBuf::zeroed(b.len());
        a.as_mut_slice().copy_from_slice(b);
        a
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: owned allocation of `len` bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: owned allocation of `len` bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: allocated in `zeroed` with this layout.
            unsafe { dealloc(self.ptr, Layout::from_size_align(self.len, 64).expect("layout")) };
        }
    }
}

/// Machine code mapped executable (and no longer writable).
pub struct ExecCode {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is read-only after construction.
unsafe impl Send for ExecCode {}
unsafe impl Sync for ExecCode {}

impl ExecCode {
    /// Maps `code` into fresh pages, then makes them read-execute.
    #[cfg(unix)]
    pub fn new(code: &[u8]) -> Result<ExecCode, String> {
        let len = code.len().max(1);
        // SAFETY: an anonymous private mapping; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mapping {len} bytes for code: {}", std::io::Error::last_os_error()));
        }
        let ptr = ptr as *mut u8;
        // SAFETY: the mapping is `len` >= code.len() bytes and writable.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), ptr, code.len()) };
        // SAFETY: same mapping.
        if unsafe { libc::mprotect(ptr as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: unmapping what was mapped above.
            unsafe { libc::munmap(ptr as *mut libc::c_void, len) };
            return Err(format!("making code executable: {e}"));
        }
        Ok(ExecCode { ptr, len })
    }

    #[cfg(not(unix))]
    pub fn new(_code: &[u8]) -> Result<ExecCode, String> {
        Err("the cpu device maps machine code with mmap and needs a unix host".into())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The function at byte `offset`, which the caller has checked lies inside the code.
    ///
    /// # Safety
    /// `offset` must be the entry of a function generated for this host with the [`KernelFn`] signature.
    pub unsafe fn func(&self, offset: usize) -> KernelFn {
        assert!(offset < self.len, "function offset outside the code");
        // SAFETY: per the caller's contract.
        unsafe { std::mem::transmute::<*mut u8, KernelFn>(self.ptr.add(offset)) }
    }
}

impl Drop for ExecCode {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: unmapping our own mapping.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}
