// CPU kernels for the fast path and NeuS, built on first use by nerfexp.kernels (torch's C++ extension loader).
//
// Hash-grid encoding: the same layout, hash and trilinear interpolation as
// HashGridEncoder.encode_torch. The forward pass splits the points: threads take blocks of 8192 points in turn
// (a block waits on no other thread's progress) and run the levels over a block one after another, writing
// (N, P + L * F) rows no other thread touches, so the encoding can follow a prefix's columns (NeuS: the points)
// without a concatenation pass. On NeuS's probe points that is 1.05-1.1x the throughput of splitting levels, which
// needs a level-major buffer and a transpose, and saves the concatenation (a fifth of the encoding's time).
// The backward pass splits the levels: levels own disjoint table rows, so it scatters without atomics. Features
// are level-major there, (L, N, F): with the (N, L * F) layout two threads on neighbouring levels write the same
// cache lines and run about 2x slower (measured on 2 cores); one transpose at the boundary costs far less.
// Gradients go to the table only.
#include <torch/extension.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

// An AVX2 + FMA copy beside the baseline (SSE2) one, picked at load time on CPUs that have them: 0.67 vs 2.7 ns per
// softplus element on 2 cores (ATen's: 2.0). "arch=haswell" would test for that very CPU model, not its features.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && __GNUC__ >= 12
#define NERFEXP_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define NERFEXP_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NERFEXP_SIMD_CLONES
#endif

namespace {

constexpr uint32_t kPrime1 = 2654435761u;
constexpr uint32_t kPrime2 = 805459861u;

struct Levels {
  const float* scales;
  const int64_t* res;
  const int64_t* sizes;
  const int64_t* offsets;
  int64_t n_levels;
  int64_t dense_levels;
};

// One level's cells: rows (in the level's table) and trilinear weights of the 8 corners of the cell holding a
// point. Points are normalised to [0, 1], so x * scale + 0.5 > 0 and truncation is the floor (std::floor is a
// library call in the baseline x86-64 build), and every index fits 32 bits (dense levels have res^3 <= 2^30 rows).
// Specialised per kind of level, with the y and z terms of the hash or of the dense index computed once per
// point: 1.5x the throughput of the general per-corner form on NeuS's probe points, with the same results.
template <bool kDense>
struct LevelCells {
  float scale;
  uint32_t size, mask, dy, dz;

  LevelCells(const Levels& lv, int64_t l)
      : scale(lv.scales[l]), size(static_cast<uint32_t>(lv.sizes[l])), mask(size - 1),
        dy(kDense ? static_cast<uint32_t>(lv.res[l]) : kPrime1),
        dz(kDense ? static_cast<uint32_t>(lv.res[l] * lv.res[l]) : kPrime2) {}

  inline void corners(const float* x, uint32_t* rows, float* weights) const {
    const float px = x[0] * scale + 0.5f, py = x[1] * scale + 0.5f, pz = x[2] * scale + 0.5f;
    const int32_t ix = static_cast<int32_t>(px), iy = static_cast<int32_t>(py), iz = static_cast<int32_t>(pz);
    const float fx = px - static_cast<float>(ix), fy = py - static_cast<float>(iy), fz = pz - static_cast<float>(iz);
    const float wx[2] = {1.0f - fx, fx}, wy[2] = {1.0f - fy, fy}, wz[2] = {1.0f - fz, fz};
    const uint32_t cx = static_cast<uint32_t>(ix), ty = static_cast<uint32_t>(iy) * dy,
                   tz = static_cast<uint32_t>(iz) * dz;
    for (int c = 0; c < 8; ++c) {
      const uint32_t ax = cx + (c & 1), ay = ty + (((c >> 1) & 1) ? dy : 0u), az = tz + (((c >> 2) & 1) ? dz : 0u);
      uint32_t row;
      if (kDense) {
        row = ax + ay + az;
        if (row >= size) row -= size;  // only on the upper faces; equals "% size" there (row < 2 * size)
      } else {
        row = (ax ^ ay ^ az) & mask;  // sizes of hashed levels are powers of two
      }
      rows[c] = row;
      weights[c] = wx[c & 1] * wy[(c >> 1) & 1] * wz[(c >> 2) & 1];
    }
  }
};

// Calls fn(std::integral_constant<bool, dense>) for level l's kind.
template <typename Fn>
void dispatch_level(const Levels& lv, int64_t l, Fn&& fn) {
  if (l < lv.dense_levels) {
    fn(std::integral_constant<bool, true>{});
  } else {
    fn(std::integral_constant<bool, false>{});
  }
}

Levels levels_of(const torch::Tensor& scales, const torch::Tensor& res, const torch::Tensor& sizes,
                 const torch::Tensor& offsets, int64_t dense_levels) {
  return Levels{scales.data_ptr<float>(), res.data_ptr<int64_t>(), sizes.data_ptr<int64_t>(),
                offsets.data_ptr<int64_t>(), scales.size(0), dense_levels};
}

// (A, B, F) -> (B, A, F) for contiguous float data, in tiles of 64 x 64 (A x B) that threads share out: inside a
// tile reads and writes run along short contiguous stretches (torch's strided copy of the same permute ran at under
// 1 GB/s). Points x levels, for the backward pass.
torch::Tensor swap_leading(const torch::Tensor& src, int64_t a, int64_t b, int64_t f) {
  auto out = torch::empty({b, a * f}, src.options());
  const float* s = src.data_ptr<float>();
  float* o = out.data_ptr<float>();
  constexpr int64_t kTile = 64;
  const int64_t tiles_a = (a + kTile - 1) / kTile, tiles_b = (b + kTile - 1) / kTile;
#pragma omp parallel for schedule(static)
  for (int64_t tile = 0; tile < tiles_a * tiles_b; ++tile) {
    const int64_t j0 = (tile % tiles_a) * kTile, i0 = (tile / tiles_a) * kTile;
    const int64_t j1 = std::min(a, j0 + kTile), i1 = std::min(b, i0 + kTile);
    for (int64_t i = i0; i < i1; ++i) {
      for (int64_t j = j0; j < j1; ++j) {
        const float* from = s + (j * b + i) * f;
        float* to = o + (i * a + j) * f;
        for (int64_t k = 0; k < f; ++k) to[k] = from[k];
      }
    }
  }
  return out;
}

}  // namespace

// The forward pass of one level over points [i0, i1); a point's F features go to op[i * stride + l * F],
// accumulated in registers (written through a pointer the compiler must assume aliases the table, which measured
// 2x slower). The corners of the point kAhead places on are computed and prefetched before this point's rows are
// read: the rows of hashed levels are random reads into tables larger than L2.
template <int F, bool kDense>
void forward_level(const Levels& lv, int64_t l, int64_t i0, int64_t i1, const float* xp, const float* tp, float* op,
                   int64_t stride) {
  constexpr int64_t kAhead = 8;
  const LevelCells<kDense> cells(lv, l);
  const float* base = tp + lv.offsets[l] * F;
  uint32_t rows[kAhead][8];
  float w[kAhead][8];
  auto fetch = [&](int64_t i) {
    const int64_t s = i % kAhead;
    cells.corners(xp + 3 * i, rows[s], w[s]);
    for (int c = 0; c < 8; ++c) __builtin_prefetch(base + static_cast<int64_t>(rows[s][c]) * F);
  };
  for (int64_t i = i0; i < std::min(i1, i0 + kAhead); ++i) fetch(i);
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t s = i % kAhead;
    float acc[F] = {};
    for (int c = 0; c < 8; ++c) {
      const float* t = base + static_cast<int64_t>(rows[s][c]) * F;
      for (int f = 0; f < F; ++f) acc[f] += w[s][c] * t[f];
    }
    float* o = op + i * stride + l * F;
    for (int f = 0; f < F; ++f) o[f] = acc[f];
    if (i + kAhead < i1) fetch(i + kAhead);
  }
}

template <int F, bool kDense>
void backward_level(const Levels& lv, int64_t l, int64_t n, const float* xp, const float* gp, float* tp) {
  constexpr int64_t kAhead = 8;  // as in forward_level: the rows of points ahead are fetched while this one adds
  const LevelCells<kDense> cells(lv, l);
  float* base = tp + lv.offsets[l] * F;
  uint32_t rows[kAhead][8];
  float w[kAhead][8];
  auto fetch = [&](int64_t i) {
    const int64_t s = i % kAhead;
    cells.corners(xp + 3 * i, rows[s], w[s]);
    for (int c = 0; c < 8; ++c) __builtin_prefetch(base + static_cast<int64_t>(rows[s][c]) * F, 1);
  };
  for (int64_t i = 0; i < std::min(n, kAhead); ++i) fetch(i);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = i % kAhead;
    float g[F];
    for (int f = 0; f < F; ++f) g[f] = gp[(l * n + i) * F + f];
    for (int c = 0; c < 8; ++c) {
      float* t = base + static_cast<int64_t>(rows[s][c]) * F;
      for (int f = 0; f < F; ++f) t[f] += w[s][c] * g[f];
    }
    if (i + kAhead < n) fetch(i + kAhead);
  }
}

// The feature counts compiled here: nerfexp.kernels.HASH_FEATURES lists the same, for the Python side's choice.
template <typename Fn>
void dispatch_features(int64_t f_dim, Fn&& fn) {
  switch (f_dim) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 8: fn(std::integral_constant<int, 8>{}); break;
    default: TORCH_CHECK(false, "the CPU hash-grid kernel takes 1, 2, 4 or 8 features per level, got ", f_dim);
  }
}

// (N, P + L * F): the P columns of `prefix` (N, P), then the encoding. P may be 0; a field that reads its points
// beside their encoding (NeuS's SDF) gets them without a separate concatenation, which cost a fifth of the encoding.
torch::Tensor hash_forward(torch::Tensor x, torch::Tensor table, torch::Tensor scales, torch::Tensor res,
                           torch::Tensor sizes, torch::Tensor offsets, int64_t dense_levels, torch::Tensor prefix) {
  x = x.contiguous();
  table = table.contiguous();
  const Levels lv = levels_of(scales, res, sizes, offsets, dense_levels);
  const int64_t n = x.size(0), f_dim = table.size(1);
  TORCH_CHECK(prefix.dim() == 2 && (prefix.size(1) == 0 || (prefix.size(0) == n &&
              prefix.scalar_type() == torch::kFloat32)), "hash_forward's prefix must be (N, P) float32 with N = ", n,
              " points, or (0, 0)");
  const int64_t p_dim = prefix.size(1);
  if (p_dim) prefix = prefix.contiguous();
  const int64_t stride = p_dim + lv.n_levels * f_dim;
  auto out = torch::empty({n, stride}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* tp = table.data_ptr<float>();
  const float* pp = p_dim ? prefix.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  constexpr int64_t kBlock = 8192;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  dispatch_features(f_dim, [&](auto F) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t i0 = block * kBlock, i1 = std::min(n, i0 + kBlock);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t k = 0; k < p_dim; ++k) op[i * stride + k] = pp[i * p_dim + k];
      }
      for (int64_t l = 0; l < lv.n_levels; ++l) {
        dispatch_level(lv, l, [&](auto dense) {
          forward_level<decltype(F)::value, decltype(dense)::value>(lv, l, i0, i1, xp, tp, op + p_dim, stride);
        });
      }
    }
  });
  return out;
}

torch::Tensor hash_backward(torch::Tensor grad_out, torch::Tensor x, int64_t table_rows, torch::Tensor scales,
                            torch::Tensor res, torch::Tensor sizes, torch::Tensor offsets, int64_t dense_levels) {
  x = x.contiguous();
  const Levels lv = levels_of(scales, res, sizes, offsets, dense_levels);
  const int64_t n = x.size(0), out_dim = grad_out.size(1), f_dim = out_dim / lv.n_levels;
  const auto grad_lm = swap_leading(grad_out.contiguous(), n, lv.n_levels, f_dim);  // (L, N * F)
  auto grad_table = torch::empty({table_rows, f_dim}, grad_out.options());
  const float* xp = x.data_ptr<float>();
  const float* gp = grad_lm.data_ptr<float>();
  float* tp = grad_table.data_ptr<float>();
  dispatch_features(f_dim, [&](auto F) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t l = 0; l < lv.n_levels; ++l) {
      // each level zeroes its own rows: no serial memset of the whole table before the threads start
      std::fill(tp + lv.offsets[l] * f_dim, tp + (lv.offsets[l] + lv.sizes[l]) * f_dim, 0.0f);
      dispatch_level(lv, l, [&](auto dense) {
        backward_level<decltype(F)::value, decltype(dense)::value>(lv, l, n, xp, gp, tp);
      });
    }
  });
  return grad_table;
}

// Occupancy-grid marching: per ray, steps t = t0 + (k + offset) * dt while t < t1, keeping those whose cell in
// the res^3 grid over [-bound, bound]^3 is occupied. Returns kept depths packed to the front of each row of an
// (R, S) tensor, S being the most any ray kept, and the matching mask.
std::vector<torch::Tensor> march_occupied(torch::Tensor origins, torch::Tensor dirs, torch::Tensor t0,
                                          torch::Tensor t1, torch::Tensor dt, torch::Tensor offset,
                                          torch::Tensor occupied, double bound, int64_t res) {
  origins = origins.contiguous();
  dirs = dirs.contiguous();
  t0 = t0.contiguous();
  t1 = t1.contiguous();
  dt = dt.contiguous();
  offset = offset.contiguous();
  occupied = occupied.contiguous();
  const int64_t n = origins.size(0);
  const float* o = origins.data_ptr<float>();
  const float* d = dirs.data_ptr<float>();
  const float* a = t0.data_ptr<float>();
  const float* b = t1.data_ptr<float>();
  const float* st = dt.data_ptr<float>();
  const float* off = offset.data_ptr<float>();
  const bool* occ = occupied.data_ptr<bool>();
  const float lo = static_cast<float>(-bound), inv_cell = static_cast<float>(res / (2.0 * bound));
  auto cell_of = [&](const float* p) -> int64_t {
    int64_t g[3];
    for (int k = 0; k < 3; ++k) {
      int64_t v = static_cast<int64_t>((p[k] - lo) * inv_cell);
      g[k] = v < 0 ? 0 : (v >= res ? res - 1 : v);
    }
    return g[0] + res * (g[1] + res * g[2]);
  };
  auto counts = torch::zeros({n}, torch::kInt64);
  int64_t* cnt = counts.data_ptr<int64_t>();
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t r = 0; r < n; ++r) {
    int64_t c = 0;
    for (int64_t k = 0;; ++k) {
      const float t = a[r] + (static_cast<float>(k) + off[r]) * st[r];
      if (!(t < b[r])) break;
      const float p[3] = {o[3 * r] + d[3 * r] * t, o[3 * r + 1] + d[3 * r + 1] * t, o[3 * r + 2] + d[3 * r + 2] * t};
      c += occ[cell_of(p)];
    }
    cnt[r] = c;
  }
  int64_t width = 1;
  for (int64_t r = 0; r < n; ++r) width = std::max(width, cnt[r]);
  auto out_t = torch::zeros({n, width}, origins.options());
  auto out_m = torch::zeros({n, width}, torch::kBool);
  float* ot = out_t.data_ptr<float>();
  bool* om = out_m.data_ptr<bool>();
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t r = 0; r < n; ++r) {
    int64_t c = 0;
    for (int64_t k = 0; c < cnt[r]; ++k) {
      const float t = a[r] + (static_cast<float>(k) + off[r]) * st[r];
      const float p[3] = {o[3 * r] + d[3 * r] * t, o[3 * r + 1] + d[3 * r + 1] * t, o[3 * r + 2] + d[3 * r + 2] * t};
      if (occ[cell_of(p)]) {
        ot[r * width + c] = t;
        om[r * width + c] = true;
        ++c;
      }
    }
  }
  return {out_t, out_m};
}

// softplus(x) = log(1 + exp(beta x)) / beta, in place, as max(x, 0) + log1p(exp(-|z|)) / beta with z = beta x. ATen's
// kernel costs as much as the oneDNN product before it in a NeuS geometry MLP (beta 100 keeps most inputs in the
// curved part, so no ReLU shortcut applies); this loop has no library calls, so the compiler vectorises it.
// exp: 2^-n exp(-r), |r| <= ln2 / 2, degree-7 Taylor polynomial (relative error < 2e-8); log1p(u), u in (0, 1]:
// 2 atanh(s) with s = u / (2 + u) <= 1/3, seven odd terms (error < 1e-8). Both below float32's own rounding.

NERFEXP_SIMD_CLONES void softplus_inplace(torch::Tensor x, double beta) {
  TORCH_CHECK(x.is_contiguous() && x.scalar_type() == torch::kFloat32, "softplus_inplace takes contiguous float32");
  float* p = x.data_ptr<float>();
  const int64_t n = x.numel();
  const float b = static_cast<float>(beta), inv_b = 1.0f / b;
  constexpr int64_t kBlock = 16384;
#pragma omp parallel for schedule(static)
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t stop = std::min(n, start + kBlock);
#pragma omp simd
    for (int64_t i = start; i < stop; ++i) {
      const float v = p[i], z = v * b;
      const float az = z < 0.0f ? -z : z;
      const float a = az < 87.0f ? az : 87.0f;
      const float fn = static_cast<float>(static_cast<int32_t>(a * 1.44269504f + 0.5f));
      const float r = (fn * 0.693359375f - a) - fn * 2.12194440e-4f;  // n ln2 - a, ln2 in two parts (Cody-Waite)
      float e = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f + r * (8.33333333e-3f
                + r * (1.38888889e-3f + r * 1.98412698e-4f))))));
      const int32_t bits = (127 - static_cast<int32_t>(fn)) << 23;
      float scale;
      std::memcpy(&scale, &bits, sizeof(scale));
      const float u = e * scale;  // exp(-|z|) in (0, 1]
      const float s = u / (2.0f + u), s2 = s * s;
      const float l = 2.0f * s * (1.0f + s2 * (0.333333333f + s2 * (0.2f + s2 * (0.142857143f + s2 * (0.111111111f
                      + s2 * (0.0909090909f + s2 * 0.0769230769f))))));
      p[i] = (v > 0.0f ? v : 0.0f) + l * inv_b;  // not (max(z, 0) + l) / beta: large inputs come back exactly
    }
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("hash_forward", &hash_forward, "hash-grid encoding (CPU)");
  m.def("hash_backward", &hash_backward, "gradient of the hash-grid encoding w.r.t. the table (CPU)");
  m.def("march_occupied", &march_occupied, "occupancy-grid ray marching (CPU)");
  m.def("softplus_inplace", &softplus_inplace, "softplus with sharpness beta, in place (CPU, float32)");
}
