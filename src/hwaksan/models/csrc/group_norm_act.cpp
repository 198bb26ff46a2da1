// Group normalisation, a per-sample affine map and an optional SiLU fused in one kernel for a
// channels-last (N, H, W, C) tensor, forward (two passes for the moments, one for the output) and
// backward (two passes), for float32 and bfloat16 data.
//
//   xhat[n, p, c] = (x[n, p, c] - mean[n, g(c)]) * rstd[n, g(c)]          (Wu & He 2018, eq. 1)
//   z[n, p, c]    = A[n, c] * xhat[n, p, c] + B[n, c]
//   y[n, p, c]    = silu(z) = z * sigmoid(z)     (or z itself when silu == 0)
//
// with p the pixel index, g(c) = c / (C / G), mean and rstd = 1 / sqrt(var + eps) over the
// (C / G) x H x W values of a group (biased variance). The caller folds GroupNorm's weight and
// bias and ADM's scale-shift (AdaGN, Dhariwal & Nichol 2021, eq. 2) into A and B.
//
// Backward, from dy: dz = dy * silu'(z), dA = sum_p dz * xhat, dB = sum_p dz and, with
// dxhat = A dz and M = (C / G) H W values per group,
//   dx = rstd * (dxhat - mean_group(dxhat) - xhat * mean_group(dxhat * xhat)).
//
// One sample is one unit of work (its slab of H W C values stays in the core's cache across the
// passes); samples are spread over OpenMP threads, so results do not depend on the thread count.
// Loops run over rows of R whole pixels (L = R C contiguous values, R = max(1, 512 / C)) with the
// per-channel parameters tiled to length L: long unit-stride inner loops, which the compiler
// vectorises, instead of C-long ones with per-pixel overhead. Sums run in float32 over blocks of
// about 256 pixels and in double across blocks. bfloat16 values are widened exactly and rounded
// back to nearest-even, NaN kept NaN.
//
// Plain C ABI (no Python or torch headers): the library compiles this file once per machine and
// calls it through ctypes.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace {

constexpr int64_t kRowValues = 512;   // target values per row
constexpr int64_t kBlockPixels = 256;  // pixels summed in float32 before adding into double

inline float widen(float v) { return v; }
inline float widen(uint16_t v) {
  return __builtin_bit_cast(float, static_cast<uint32_t>(v) << 16);
}

inline void narrow(float v, float* out) { *out = v; }
inline void narrow(float v, uint16_t* out) {
  const uint32_t bits = __builtin_bit_cast(uint32_t, v);
  const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  *out = static_cast<uint16_t>(is_nan ? 0x7fc0u : rounded);
}

// exp(v) for the logistic function: 2^k exp(r) with k = round(v / ln 2), r = v - k ln 2 split in
// two parts (Cody & Waite), |r| <= ln(2) / 2, and exp(r) by its Taylor polynomial of degree 7
// (truncation error < 0.35^8 / 8! < 6e-9 relative). Arguments are clamped to [-80, 80], where exp
// and the logistic function stay normal floats; the callers multiply by z, which keeps NaN NaN.
inline float exp_clamped(float v) {
  v = v < -80.0f ? -80.0f : v;
  v = v > 80.0f ? 80.0f : v;
  const float k = std::floor(v * 1.44269504f + 0.5f);
  const float r = (v - k * 0.693145752f) - k * 1.42860677e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * __builtin_bit_cast(float, (static_cast<int32_t>(k) + 127) << 23);
}

// Flush denormal results to zero on this thread while in scope. The vectorised loops evaluate
// both sides of exp_clamped's clamp and blend them; the clamped side can be denormal (a product
// with 1 / (1 + e^80)), and each denormal result costs a microcode assist: the loops ran 5x
// slower. Results below 1.2e-38 in magnitude become zero.
struct FlushDenormals {
#if defined(__SSE__)
  unsigned saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8000u); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// dL/dz from dL/dy at z: dy * sigmoid(z) (1 + z (1 - sigmoid(z))) for SiLU, dy otherwise.
template <bool Silu>
inline float dz_of(float dy, float z) {
  if (!Silu) return dy;
  const float s = 1.0f / (1.0f + exp_clamped(-z));
  return dy * s * (1.0f + z * (1.0f - s));
}

template <bool Silu>
inline float act(float z) {
  return Silu ? z * (1.0f / (1.0f + exp_clamped(-z))) : z;
}

// The rows of one sample: `pixels` pixels of C channels, R pixels (L = R C values) per row.
struct Rows {
  int64_t pixels, C, R, L;
  Rows(int64_t pixels_, int64_t C_)
      : pixels(pixels_), C(C_), R(C_ < kRowValues ? kRowValues / C_ : 1), L(R * C_) {}
  int64_t values() const { return pixels * C; }
  // per-channel values v[c] (or v[c / D] for per-group ones) repeated to a row's length
  std::vector<float> tile(const float* v, int64_t D = 1) const {
    std::vector<float> out(L);
    for (int64_t c = 0; c < C; ++c) out[c] = v[c / D];
    for (int64_t r = 1; r < R; ++r) std::copy(out.begin(), out.begin() + C, out.begin() + r * C);
    return out;
  }
};

// Per-channel sums over the pixels of one sample: total[k C + c] = sum over the pixels of the
// k-th value that f(i, j, acc0, acc1) adds for value i (channel j % C at row offset j), k < K.
// float32 within blocks of about kBlockPixels pixels, double across them.
template <int K, typename F>
std::vector<double> channel_sums(const Rows& rows, F f) {
  std::vector<double> total(K * rows.C, 0.0);
  std::vector<float> acc(K * rows.L);
  const int64_t block = (kBlockPixels > rows.R ? kBlockPixels / rows.R : 1) * rows.L;
  for (int64_t b0 = 0; b0 < rows.values(); b0 += block) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    float* acc0 = acc.data();
    float* acc1 = acc.data() + (K - 1) * rows.L;
    const int64_t b1 = b0 + block < rows.values() ? b0 + block : rows.values();
    for (int64_t i0 = b0; i0 < b1; i0 += rows.L) {
      const int64_t len = i0 + rows.L < b1 ? rows.L : b1 - i0;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) f(i0 + j, j, acc0[j], acc1[j]);
    }
    for (int64_t k = 0; k < K; ++k)
      for (int64_t r = 0; r < rows.R; ++r)
        for (int64_t c = 0; c < rows.C; ++c) total[k * rows.C + c] += acc[k * rows.L + r * rows.C + c];
  }
  return total;
}

// g(i, j) for every value i of one sample, j its offset in its row.
template <typename G>
void for_rows(const Rows& rows, G g) {
  for (int64_t i0 = 0; i0 < rows.values(); i0 += rows.L) {
    const int64_t len = i0 + rows.L < rows.values() ? rows.L : rows.values() - i0;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) g(i0 + j, j);
  }
}

// Sums of per-channel values over each group's D channels.
std::vector<double> group_sums(const double* per_channel, int64_t G, int64_t D) {
  std::vector<double> out(G, 0.0);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t d = 0; d < D; ++d) out[g] += per_channel[g * D + d];
  return out;
}

template <bool Silu, typename T>
void forward(const T* x, const float* A, const float* B, T* y, float* mean, float* rstd, int64_t N,
             int64_t pixels, int64_t C, int64_t G, double eps, int threads) {
  const int64_t D = C / G;
  const double count = static_cast<double>(pixels * D);
  const Rows rows(pixels, C);
#pragma omp parallel num_threads(threads)
  {
  const FlushDenormals flush;
#pragma omp for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* xs = x + n * pixels * C;
    T* ys = y + n * pixels * C;
    float* m = mean + n * G;
    float* r = rstd + n * G;
    // two passes for the moments: the mean, then the squared deviations from it
    const std::vector<double> sums = group_sums(
        channel_sums<1>(rows, [&](int64_t i, int64_t, float& s, float&) { s += widen(xs[i]); }).data(), G, D);
    for (int64_t g = 0; g < G; ++g) m[g] = static_cast<float>(sums[g] / count);
    const std::vector<float> mt = rows.tile(m, D);
    const float* mp = mt.data();
    const std::vector<double> squares = group_sums(
        channel_sums<1>(rows, [&](int64_t i, int64_t j, float& s, float&) {
          const float v = widen(xs[i]) - mp[j];
          s += v * v;
        }).data(), G, D);
    std::vector<float> a(C), b(C);
    for (int64_t g = 0; g < G; ++g) {
      r[g] = static_cast<float>(1.0 / std::sqrt(squares[g] / count + eps));
      for (int64_t c = g * D; c < (g + 1) * D; ++c) {
        a[c] = A[n * C + c] * r[g];
        b[c] = B[n * C + c] - a[c] * m[g];
      }
    }
    const std::vector<float> at = rows.tile(a.data()), bt = rows.tile(b.data());
    const float *ap = at.data(), *bp = bt.data();
    for_rows(rows, [&](int64_t i, int64_t j) { narrow(act<Silu>(ap[j] * widen(xs[i]) + bp[j]), ys + i); });
  }
  }
}

template <bool Silu, typename T>
void backward(const T* dy, const T* x, const float* A, const float* B, const float* mean,
              const float* rstd, T* dx, float* dA, float* dB, int64_t N, int64_t pixels, int64_t C,
              int64_t G, int threads) {
  const int64_t D = C / G;
  const double count = static_cast<double>(pixels * D);
  const Rows rows(pixels, C);
#pragma omp parallel num_threads(threads)
  {
    const FlushDenormals flush;
    std::vector<float> dz(Silu ? rows.values() : 0);  // one sample's dL/dz, pass 1 to pass 2
    float* dzp = dz.data();
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const T* xs = x + n * pixels * C;
      const T* dys = dy + n * pixels * C;
      T* dxs = dx + n * pixels * C;
      const std::vector<float> mt = rows.tile(mean + n * G, D), rt = rows.tile(rstd + n * G, D);
      const std::vector<float> at = rows.tile(A + n * C), bt = rows.tile(B + n * C);
      const float *mp = mt.data(), *rp = rt.data(), *ap = at.data(), *bp = bt.data();
      // pass 1: dz, and per channel dB = sum_p dz and dA = sum_p dz xhat
      const std::vector<double> sums = channel_sums<2>(rows, [&](int64_t i, int64_t j, float& s0, float& s1) {
        const float xh = (widen(xs[i]) - mp[j]) * rp[j];
        const float d = dz_of<Silu>(widen(dys[i]), ap[j] * xh + bp[j]);
        if (Silu) dzp[i] = d;  // without SiLU, dz is dy itself
        s0 += d;
        s1 += d * xh;
      });
      // group means of dxhat = A dz (c1) and of dxhat xhat (c2)
      std::vector<double> dxhat(C), dxhat_xhat(C);
      for (int64_t c = 0; c < C; ++c) {
        dB[n * C + c] = static_cast<float>(sums[c]);
        dA[n * C + c] = static_cast<float>(sums[C + c]);
        dxhat[c] = A[n * C + c] * sums[c];
        dxhat_xhat[c] = A[n * C + c] * sums[C + c];
      }
      const std::vector<double> s1 = group_sums(dxhat.data(), G, D), s2 = group_sums(dxhat_xhat.data(), G, D);
      std::vector<float> c1(G), c2(G);
      for (int64_t g = 0; g < G; ++g) {
        c1[g] = static_cast<float>(s1[g] / count);
        c2[g] = static_cast<float>(s2[g] / count);
      }
      const std::vector<float> c1t = rows.tile(c1.data(), D), c2t = rows.tile(c2.data(), D);
      const float *c1p = c1t.data(), *c2p = c2t.data();
      // pass 2: dx = rstd (A dz - mean(dxhat) - xhat mean(dxhat xhat))
      for_rows(rows, [&](int64_t i, int64_t j) {
        const float xh = (widen(xs[i]) - mp[j]) * rp[j];
        const float d = Silu ? dzp[i] : widen(dys[i]);
        narrow(rp[j] * (ap[j] * d - c1p[j] - xh * c2p[j]), dxs + i);
      });
    }
  }
}

}  // namespace

extern "C" {

void gn_act_forward_f32(const float* x, const float* A, const float* B, float* y, float* mean,
                        float* rstd, int64_t N, int64_t pixels, int64_t C, int64_t G, double eps,
                        int silu, int threads) {
  (silu ? forward<true, float> : forward<false, float>)(x, A, B, y, mean, rstd, N, pixels, C, G, eps, threads);
}

void gn_act_forward_bf16(const uint16_t* x, const float* A, const float* B, uint16_t* y, float* mean,
                         float* rstd, int64_t N, int64_t pixels, int64_t C, int64_t G, double eps,
                         int silu, int threads) {
  (silu ? forward<true, uint16_t> : forward<false, uint16_t>)(x, A, B, y, mean, rstd, N, pixels, C, G, eps,
                                                          threads);
}

void gn_act_backward_f32(const float* dy, const float* x, const float* A, const float* B,
                         const float* mean, const float* rstd, float* dx, float* dA, float* dB,
                         int64_t N, int64_t pixels, int64_t C, int64_t G, int silu, int threads) {
  (silu ? backward<true, float> : backward<false, float>)(dy, x, A, B, mean, rstd, dx, dA, dB, N, pixels, C, G,
                                                        threads);
}

void gn_act_backward_bf16(const uint16_t* dy, const uint16_t* x, const float* A, const float* B,
                          const float* mean, const float* rstd, uint16_t* dx, float* dA, float* dB,
                          int64_t N, int64_t pixels, int64_t C, int64_t G, int silu, int threads) {
  (silu ? backward<true, uint16_t> : backward<false, uint16_t>)(dy, x, A, B, mean, rstd, dx, dA, dB, N, pixels,
                                                              C, G, threads);
}

}  // extern "C"
