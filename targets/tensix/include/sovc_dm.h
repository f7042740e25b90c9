// sovc_dm.h: tile stores that sovc's data-movement kernels do with the RISC-V core itself, in L1, without the
// NoC: FillTile, PadTile and BcastTile of sovc's Tensix programs. TT-Metalium has no call for these, so sovc
// emits this header beside the kernels (kernels/sovc_dm.h) and the kernels include it after
// api/dataflow/dataflow_api.h, which brings `tt_l1_ptr` and uint32_t.
//
// Tile layout: a 32x32 tile is four 16x16 faces, face0 top-left, face1 top-right, face2 bottom-left, face3
// bottom-right, each row-major, one after another. Element (r, c) is element (r % 16) * 16 + c % 16 of face
// (r / 16) * 2 + c / 16. Float16_b tiles hold 1024 16-bit values, Float32 tiles 1024 32-bit values, nothing else.
//
// Only those two formats are supported. A block-float tile (Bfp8_b, Bfp4_b) shares one exponent per 16 values
// of a face row, stored before the mantissas; storing one element means re-encoding its whole group, which these
// helpers do not do. Instantiating a helper for a Bfp format fails to compile (static_assert) rather than
// writing a wrong tile; sovc's simulator rejects the same programs.
//
// Values are passed as bit patterns already in the tile's format (the upper 16 bits of the float, rounded to
// nearest even, for Float16_b), so the kernels do no float arithmetic.
#pragma once

#include <stdint.h>

namespace sovc {

enum class Fmt : uint32_t { Float32 = 0, Float16_b = 1, Bfp8_b = 2, Bfp4_b = 3 };
enum class Bcast : uint32_t { None = 0, Rows = 1, Cols = 2, Scalar = 3 };

template <Fmt F>
struct Elem {
    static_assert(F == Fmt::Float32 || F == Fmt::Float16_b,
                  "sovc_dm.h: FillTile/PadTile/BcastTile support Float16_b and Float32 tiles only, not Bfp8_b or "
                  "Bfp4_b (their shared exponents would have to be re-encoded)");
    using T = uint32_t;
};
template <>
struct Elem<Fmt::Float16_b> {
    using T = uint16_t;
};

template <Fmt F>
using ElemPtr = volatile tt_l1_ptr typename Elem<F>::T*;

// Offset of element (r, c) in face layout.
inline uint32_t face_offset(uint32_t r, uint32_t c) {
    return ((r >> 4) * 2 + (c >> 4)) * 256 + (r & 15) * 16 + (c & 15);
}

template <Fmt F>
inline ElemPtr<F> tile_at(uint32_t l1_addr) {
    return reinterpret_cast<ElemPtr<F>>(static_cast<uintptr_t>(l1_addr));
}

// Every element `bits`.
template <Fmt F>
inline void fill_tile(uint32_t l1_addr, uint32_t bits) {
    ElemPtr<F> t = tile_at<F>(l1_addr);
    for (uint32_t i = 0; i < 1024; ++i) {
        t[i] = static_cast<typename Elem<F>::T>(bits);
    }
}

// The reduce scaler: `bits` in row 0 of every face (rows 0 and 16 of the tile), zero elsewhere.
template <Fmt F>
inline void fill_scaler(uint32_t l1_addr, uint32_t bits) {
    ElemPtr<F> t = tile_at<F>(l1_addr);
    for (uint32_t i = 0; i < 1024; ++i) {
        t[i] = (i & 255) < 16 ? static_cast<typename Elem<F>::T>(bits) : 0;
    }
}

// `inside` in columns 0..cols, `outside` in the rest.
template <Fmt F>
inline void fill_cols(uint32_t l1_addr, uint32_t cols, uint32_t inside, uint32_t outside) {
    ElemPtr<F> t = tile_at<F>(l1_addr);
    for (uint32_t r = 0; r < 32; ++r) {
        for (uint32_t c = 0; c < 32; ++c) {
            t[face_offset(r, c)] = static_cast<typename Elem<F>::T>(c < cols ? inside : outside);
        }
    }
}

// Every element outside the top-left rows x cols block set to `bits` (padding of a partial tile).
template <Fmt F>
inline void pad_tile(uint32_t l1_addr, uint32_t rows, uint32_t cols, uint32_t bits) {
    ElemPtr<F> t = tile_at<F>(l1_addr);
    for (uint32_t r = 0; r < 32; ++r) {
        for (uint32_t c = 0; c < 32; ++c) {
            if (r >= rows || c >= cols) {
                t[face_offset(r, c)] = static_cast<typename Elem<F>::T>(bits);
            }
        }
    }
}

// Row 0 (Rows), column 0 (Cols) or element (0, 0) (Scalar) copied across the tile; None leaves it as it is.
template <Fmt F, Bcast B>
inline void bcast_tile(uint32_t l1_addr) {
    ElemPtr<F> t = tile_at<F>(l1_addr);
    if (B == Bcast::None) {
        return;
    }
    const typename Elem<F>::T corner = t[0];
    for (uint32_t r = 0; r < 32; ++r) {
        for (uint32_t c = 0; c < 32; ++c) {
            if (B == Bcast::Rows && r > 0) {
                t[face_offset(r, c)] = t[face_offset(0, c)];
            } else if (B == Bcast::Cols && c > 0) {
                t[face_offset(r, c)] = t[face_offset(r, 0)];
            } else if (B == Bcast::Scalar) {
                t[face_offset(r, c)] = corner;
            }
        }
    }
}


// Im2colTile: tile (kt, nt) of the im2col matrix of image `image` of a convolution input stored as a
// tensor of `src_rows` x `src_cols` views (any view that keeps the logical row-major order of
// [N, C, H, W]). Row r of the matrix is (channel, kernel row, kernel column), column c is (output row,
// output column); elements outside the image are zero. Each source tile the gather touches is read over the
// NoC into `scratch_addr` (one tile of L1), then the RISC-V core copies its elements.
// Elements of a tensor in DRAM, by flat (row-major) index, for tensors viewed `rows` x `cols` per batch
// entry (any view keeps the logical order): each source tile is read over the NoC into one tile of L1
// scratch when an element of it is first needed, and kept until another tile is.
template <Fmt F, typename Accessor>
struct SourceTiles {
    const Accessor& src;
    uint32_t rows, cols, scratch_addr;
    uint32_t cached;

    typename Elem<F>::T at(uint64_t f) {
        const uint32_t col = f % cols, row = f / cols % rows;
        const uint32_t b = f / (static_cast<uint64_t>(cols) * rows);
        const uint32_t page = (b * ((rows + 31) / 32) + row / 32) * ((cols + 31) / 32) + col / 32;
        if (page != cached) {
            noc_async_read_tile(page, src, scratch_addr);
            noc_async_read_barrier();
            cached = page;
        }
        return tile_at<F>(scratch_addr)[face_offset(row % 32, col % 32)];
    }
};

struct ConvGeom {
    uint32_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
};

template <Fmt F, typename Accessor>
inline void im2col_tile(const Accessor& src, uint32_t src_rows, uint32_t src_cols, uint32_t scratch_addr,
                        uint32_t dst_addr, uint32_t image, uint32_t kt, uint32_t nt, const ConvGeom& g) {
    ElemPtr<F> dst = tile_at<F>(dst_addr);
    SourceTiles<F, Accessor> source{src, src_rows, src_cols, scratch_addr, 0xffffffffu};
    const uint32_t k = g.c * g.kh * g.kw;
    const uint32_t n = g.oh * g.ow;
    for (uint32_t r = 0; r < 32; ++r) {
        const uint32_t kidx = kt * 32 + r;
        for (uint32_t c = 0; c < 32; ++c) {
            const uint32_t sidx = nt * 32 + c;
            typename Elem<F>::T v = 0;
            if (kidx < k && sidx < n) {
                const uint32_t ci = kidx / (g.kh * g.kw), ky = kidx / g.kw % g.kh, kx = kidx % g.kw;
                const int32_t ih = static_cast<int32_t>((sidx / g.ow) * g.sh + ky * g.dh) - static_cast<int32_t>(g.ph);
                const int32_t iw = static_cast<int32_t>((sidx % g.ow) * g.sw + kx * g.dw) - static_cast<int32_t>(g.pw);
                if (ih >= 0 && iw >= 0 && static_cast<uint32_t>(ih) < g.h && static_cast<uint32_t>(iw) < g.w) {
                    const uint64_t f =
                        ((static_cast<uint64_t>(image) * g.c + ci) * g.h + static_cast<uint32_t>(ih)) * g.w +
                        static_cast<uint32_t>(iw);
                    v = source.at(f);
                }
            }
            dst[face_offset(r, c)] = v;
        }
    }
}

// GatherTile: tile `tile` of a moved tensor (a chain of reshapes, transposes and forward slices applied to
// `src`), whose result is viewed `rows` x `cols` per batch entry. `map` encodes the chain (see sovc's
// `move_map_words`): source rank and dims, the number of steps, then per step its kind (0 reshape,
// 1 transpose, 2 slice, 3 zero pad), rank, dims and its permutation, starts and steps, or pad begins. Each
// element's source is found by walking the chain backwards (an element of padding is zero); source tiles
// are read through `scratch_addr` as in im2col_tile.
template <Fmt F, typename Accessor>
inline void gather_tile(const Accessor& src, uint32_t src_rows, uint32_t src_cols, uint32_t scratch_addr,
                        uint32_t dst_addr, uint32_t tile, uint32_t rows, uint32_t cols, const uint32_t* map) {
    constexpr uint32_t kMaxRank = 8, kMaxSteps = 16;
    ElemPtr<F> dst = tile_at<F>(dst_addr);
    SourceTiles<F, Accessor> source{src, src_rows, src_cols, scratch_addr, 0xffffffffu};
    // Decode: where each step's words start, and the source dims.
    const uint32_t src_rank = map[0];
    const uint32_t* src_dims = map + 1;
    const uint32_t nsteps = map[1 + src_rank];
    uint32_t at[kMaxSteps];
    uint32_t p = 2 + src_rank;
    for (uint32_t s = 0; s < nsteps && s < kMaxSteps; ++s) {
        at[s] = p;
        const uint32_t kind = map[p], rank = map[p + 1];
        p += 2 + rank + (kind == 1 || kind == 3 ? rank : kind == 2 ? 2 * rank : 0);
    }
    const uint32_t out_rank = nsteps ? map[at[nsteps - 1] + 1] : src_rank;
    const uint32_t* out_dims = nsteps ? map + at[nsteps - 1] + 2 : src_dims;
    const uint32_t row_tiles = (rows + 31) / 32, col_tiles = (cols + 31) / 32;
    const uint32_t b = tile / (row_tiles * col_tiles), tr = tile / col_tiles % row_tiles, tc = tile % col_tiles;
    for (uint32_t r = 0; r < 32; ++r) {
        for (uint32_t c = 0; c < 32; ++c) {
            const uint32_t row = tr * 32 + r, col = tc * 32 + c;
            typename Elem<F>::T v = 0;
            if (row < rows && col < cols) {
                uint32_t coords[kMaxRank], next[kMaxRank];
                bool padding = false;
                uint64_t f = (static_cast<uint64_t>(b) * rows + row) * cols + col;
                for (uint32_t i = out_rank; i-- > 0;) {
                    coords[i] = f % out_dims[i];
                    f /= out_dims[i];
                }
                for (uint32_t s = nsteps; s-- > 0;) {
                    const uint32_t kind = map[at[s]], rank = map[at[s] + 1];
                    const uint32_t* dims = map + at[s] + 2;
                    const uint32_t in_rank = s ? map[at[s - 1] + 1] : src_rank;
                    const uint32_t* in_dims = s ? map + at[s - 1] + 2 : src_dims;
                    if (kind == 0) {
                        uint64_t flat = 0;
                        for (uint32_t i = 0; i < rank; ++i) flat = flat * dims[i] + coords[i];
                        for (uint32_t i = in_rank; i-- > 0;) {
                            next[i] = flat % in_dims[i];
                            flat /= in_dims[i];
                        }
                    } else if (kind == 1) {
                        for (uint32_t i = 0; i < rank; ++i) next[dims[rank + i]] = coords[i];
                    } else if (kind == 3) {
                        for (uint32_t i = 0; i < rank; ++i) {
                            padding = padding || coords[i] < dims[rank + i] || coords[i] - dims[rank + i] >= in_dims[i];
                            next[i] = coords[i] - dims[rank + i];
                        }
                        if (padding) break;
                    } else {
                        for (uint32_t i = 0; i < rank; ++i) next[i] = dims[rank + i] + coords[i] * dims[2 * rank + i];
                    }
                    for (uint32_t i = 0; i < in_rank; ++i) coords[i] = next[i];
                }
                if (!padding) {
                    uint64_t s = 0;
                    for (uint32_t i = 0; i < src_rank; ++i) s = s * src_dims[i] + coords[i];
                    v = source.at(s);
                }
            }
            dst[face_offset(r, c)] = v;
        }
    }
}

// The integer an FP32 element's bits hold (indices are stored as FP32, exact below 2^24); the RISC-V core
// has no floating point, so the bits are decoded.
inline int32_t float_bits_to_int(uint32_t u) {
    const int32_t e = static_cast<int32_t>((u >> 23) & 0xffu) - 127;
    if (e < 0) return 0;
    if (e > 30) return INT32_MIN;  // beyond any table (and NaN, infinities): out of range
    const uint32_t m = (u & 0x7fffffu) | 0x800000u;
    const uint32_t v = e >= 23 ? m << (e - 23) : m >> (23 - e);
    return (u >> 31) ? -static_cast<int32_t>(v) : static_cast<int32_t>(v);
}

// EmbedTile: tile `tile` of an embedding lookup viewed `rows` x `cols` per batch entry: element f (flat) is
// element f % width of row ids[f / width] of the vocab x width table (negative ids count from the end; an id
// out of range gives zeros here, which sovc's simulator reports as an error, as the reference interpreter
// does). Table and id tiles are read through their scratch tiles as in gather_tile.
template <Fmt F, typename Accessor, typename IdAccessor>
inline void embed_tile(const Accessor& table, uint32_t table_rows, uint32_t table_cols, uint32_t scratch_addr,
                       const IdAccessor& ids, uint32_t ids_rows, uint32_t ids_cols, uint32_t ids_scratch_addr,
                       uint32_t dst_addr, uint32_t tile, uint32_t rows, uint32_t cols, uint32_t vocab,
                       uint32_t width) {
    ElemPtr<F> dst = tile_at<F>(dst_addr);
    SourceTiles<F, Accessor> source{table, table_rows, table_cols, scratch_addr, 0xffffffffu};
    SourceTiles<Fmt::Float32, IdAccessor> id_source{ids, ids_rows, ids_cols, ids_scratch_addr, 0xffffffffu};
    const uint32_t row_tiles = (rows + 31) / 32, col_tiles = (cols + 31) / 32;
    const uint32_t b = tile / (row_tiles * col_tiles), tr = tile / col_tiles % row_tiles, tc = tile % col_tiles;
    for (uint32_t r = 0; r < 32; ++r) {
        for (uint32_t c = 0; c < 32; ++c) {
            const uint32_t row = tr * 32 + r, col = tc * 32 + c;
            typename Elem<F>::T v = 0;
            if (row < rows && col < cols) {
                const uint64_t f = (static_cast<uint64_t>(b) * rows + row) * cols + col;
                int32_t id = float_bits_to_int(id_source.at(f / width));
                if (id < 0) id += static_cast<int32_t>(vocab);
                if (id >= 0 && static_cast<uint32_t>(id) < vocab) {
                    v = source.at(static_cast<uint64_t>(id) * width + f % width);
                }
            }
            dst[face_offset(r, c)] = v;
        }
    }
}

// TapTile: for window tap `tap` (kernel row tap / kw, column tap % kw), the tile of channels `ct` (rows)
// by output positions `nt` (columns) of image `image`: the input element under that tap of each output
// position's window, `pad_bits` outside the image, zero past the valid channels and positions.
template <Fmt F, typename Accessor>
inline void tap_tile(const Accessor& src, uint32_t src_rows, uint32_t src_cols, uint32_t scratch_addr,
                     uint32_t dst_addr, uint32_t image, uint32_t ct, uint32_t nt, uint32_t tap, uint32_t pad_bits,
                     const ConvGeom& g) {
    ElemPtr<F> dst = tile_at<F>(dst_addr);
    SourceTiles<F, Accessor> source{src, src_rows, src_cols, scratch_addr, 0xffffffffu};
    const uint32_t ky = tap / g.kw, kx = tap % g.kw;
    for (uint32_t r = 0; r < 32; ++r) {
        const uint32_t ch = ct * 32 + r;
        for (uint32_t c = 0; c < 32; ++c) {
            const uint32_t s = nt * 32 + c;
            typename Elem<F>::T v = 0;
            if (ch < g.c && s < g.oh * g.ow) {
                const int32_t ih = static_cast<int32_t>((s / g.ow) * g.sh + ky * g.dh) - static_cast<int32_t>(g.ph);
                const int32_t iw = static_cast<int32_t>((s % g.ow) * g.sw + kx * g.dw) - static_cast<int32_t>(g.pw);
                v = static_cast<typename Elem<F>::T>(pad_bits);
                if (ih >= 0 && iw >= 0 && static_cast<uint32_t>(ih) < g.h && static_cast<uint32_t>(iw) < g.w) {
                    const uint64_t f =
                        ((static_cast<uint64_t>(image) * g.c + ch) * g.h + static_cast<uint32_t>(ih)) * g.w +
                        static_cast<uint32_t>(iw);
                    v = source.at(f);
                }
            }
            dst[face_offset(r, c)] = v;
        }
    }
}

// ColumnTile: column `col` of the tile at `src_addr` copied to every column of the tile at `dst_addr`.
template <Fmt F>
inline void column_tile(uint32_t src_addr, uint32_t col, uint32_t dst_addr) {
    ElemPtr<F> src = tile_at<F>(src_addr);
    ElemPtr<F> dst = tile_at<F>(dst_addr);
    for (uint32_t r = 0; r < 32; ++r) {
        const typename Elem<F>::T v = src[face_offset(r, col)];
        for (uint32_t c = 0; c < 32; ++c) {
            dst[face_offset(r, c)] = v;
        }
    }
}

// ConcatPartTile: into tile `tile` of a concatenation (result elements split as outer x axis x inner, the
// axis `axis_len` long, viewed rows x cols per batch entry), the elements whose axis coordinate lies in
// [start, start + size), read from `src` (that input: outer x size x inner). Other elements are left.
template <Fmt F, typename Accessor>
inline void concat_part_tile(const Accessor& src, uint32_t src_rows, uint32_t src_cols, uint32_t scratch_addr,
                             uint32_t dst_addr, uint32_t tile, uint32_t rows, uint32_t cols, uint32_t outer,
                             uint32_t axis_len, uint32_t inner, uint32_t start, uint32_t size) {
    (void)outer;
    ElemPtr<F> dst = tile_at<F>(dst_addr);
    SourceTiles<F, Accessor> source{src, src_rows, src_cols, scratch_addr, 0xffffffffu};
    const uint32_t row_tiles = (rows + 31) / 32, col_tiles = (cols + 31) / 32;
    const uint32_t b = tile / (row_tiles * col_tiles), tr = tile / col_tiles % row_tiles, tc = tile % col_tiles;
    for (uint32_t r = 0; r < 32; ++r) {
        for (uint32_t c = 0; c < 32; ++c) {
            const uint32_t row = tr * 32 + r, col = tc * 32 + c;
            if (row >= rows || col >= cols) continue;
            const uint64_t f = (static_cast<uint64_t>(b) * rows + row) * cols + col;
            const uint64_t o = f / (static_cast<uint64_t>(inner) * axis_len);
            const uint32_t x = f / inner % axis_len, i = f % inner;
            if (x < start || x >= start + size) continue;
            const uint64_t s = (o * size + (x - start)) * inner + i;
            dst[face_offset(r, c)] = source.at(s);
        }
    }
}

// SplitTile: the FP32 tile at `src_addr` as a bf16 high part (`hi_addr`, rounded to nearest even) and the
// bf16 low part (`lo_addr`: x - hi, exact in FP32, rounded to bf16), with integer operations only (the
// data-movement cores have no floating point). Subnormal low parts and the low part of inf and NaN are 0.
inline uint32_t bf16_round_bits(uint32_t u) {
    if ((u & 0x7f800000u) == 0x7f800000u) return u & 0xffff0000u;  // inf and NaN keep their top bits
    return (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
}

inline void split_tile(uint32_t src_addr, uint32_t hi_addr, uint32_t lo_addr) {
    ElemPtr<Fmt::Float32> src = tile_at<Fmt::Float32>(src_addr);
    ElemPtr<Fmt::Float16_b> hi = tile_at<Fmt::Float16_b>(hi_addr);
    ElemPtr<Fmt::Float16_b> lo = tile_at<Fmt::Float16_b>(lo_addr);
    for (uint32_t i = 0; i < 1024; ++i) {
        const uint32_t u = src[i];
        const uint32_t h = bf16_round_bits(u);
        hi[i] = static_cast<uint16_t>(h >> 16);
        uint32_t l = 0;
        const uint32_t eu = (u >> 23) & 0xffu, eh = (h >> 23) & 0xffu;
        if (eu != 0xffu && eu != 0 && eh != 0) {
            // Both as integers in units of 2^(eh - 150): x = mx * 2^(eu - eh), hi = mh.
            const int64_t mx = static_cast<int64_t>((u & 0x7fffffu) | 0x800000u) << 1 >> (eh - eu);
            const int64_t mh = static_cast<int64_t>((h & 0x7fffffu) | 0x800000u) << 1;
            int64_t d = mx - mh;  // x - hi, exact, same sign convention as |x|
            uint32_t sign = u & 0x80000000u;
            if (d < 0) {
                d = -d;
                sign ^= 0x80000000u;
            }
            if (d != 0) {
                int32_t p = 63;
                while (((static_cast<uint64_t>(d) >> p) & 1u) == 0) --p;  // leading bit
                const int32_t e = static_cast<int32_t>(eh) - 24 + p;      // biased exponent of x - hi
                if (e > 0) {
                    const uint64_t m = p >= 23 ? static_cast<uint64_t>(d) >> (p - 23) : static_cast<uint64_t>(d) << (23 - p);
                    l = bf16_round_bits(sign | (static_cast<uint32_t>(e) << 23) | (static_cast<uint32_t>(m) & 0x7fffffu));
                }
            }
        }
        lo[i] = static_cast<uint16_t>(l >> 16);
    }
}
}  // namespace sovc
