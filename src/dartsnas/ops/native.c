#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#define LANES 16
#define SIMD _Pragma("omp simd")
typedef long i64;

/* ---- depthwise weight gradient: dW[c][i][j] = sum_{b,ho,wo} g[b,ho,wo,c] * x[b, ho*s-p+i*d, wo*s-p+j*d, c] ---- */
typedef struct { const float *x, *g; float *acc; i64 b0, b1, H, W, C, Ho, Wo, K, s, p, d; } dw_arg;

static inline __attribute__((always_inline)) void dw_block(const float *x, const float *g, float *acc, i64 b,
    i64 H, i64 W, i64 C, i64 Ho, i64 Wo, const i64 K, i64 s, i64 p, i64 d, i64 c0) {
  for (i64 ho = 0; ho < Ho; ho++) {
    const float *grow = g + ((b * Ho + ho) * Wo) * C + c0;
    for (i64 i = 0; i < K; i++) {
      i64 hi = ho * s - p + i * d;
      if (hi < 0 || hi >= H) continue;
      const float *xrow = x + ((b * H + hi) * W) * C + c0;
      float t[K][LANES];
      for (i64 j = 0; j < K; j++) for (int l = 0; l < LANES; l++) t[j][l] = 0.f;
      for (i64 wo = 0; wo < Wo; wo++) {
        const float *gp = grow + wo * C;
        i64 base = wo * s - p;
        if (base >= 0 && base + (K - 1) * d < W) {
          const float *xp = xrow + base * C;
          for (i64 j = 0; j < K; j++) for (int l = 0; l < LANES; l++) t[j][l] += gp[l] * xp[j * d * C + l];
        } else {
          for (i64 j = 0; j < K; j++) {
            i64 wi = base + j * d;
            if (wi < 0 || wi >= W) continue;
            const float *xp = xrow + wi * C;
            for (int l = 0; l < LANES; l++) t[j][l] += gp[l] * xp[l];
          }
        }
      }
      float *a = acc + (i * K) * C + c0;
      for (i64 j = 0; j < K; j++) for (int l = 0; l < LANES; l++) a[j * C + l] += t[j][l];
    }
  }
}

static void dw_block_any(const float *x, const float *g, float *acc, i64 b, i64 H, i64 W, i64 C, i64 Ho, i64 Wo,
                         i64 K, i64 s, i64 p, i64 d, i64 c0, i64 L) {
  for (i64 ho = 0; ho < Ho; ho++)
    for (i64 i = 0; i < K; i++) {
      i64 hi = ho * s - p + i * d;
      if (hi < 0 || hi >= H) continue;
      for (i64 wo = 0; wo < Wo; wo++)
        for (i64 j = 0; j < K; j++) {
          i64 wi = wo * s - p + j * d;
          if (wi < 0 || wi >= W) continue;
          const float *gp = g + ((b * Ho + ho) * Wo + wo) * C + c0, *xp = x + ((b * H + hi) * W + wi) * C + c0;
          float *a = acc + (i * K + j) * C + c0;
          for (i64 l = 0; l < L; l++) a[l] += gp[l] * xp[l];
        }
    }
}

static void *dw_worker(void *arg) {
  dw_arg *a = (dw_arg *)arg;
  for (i64 b = a->b0; b < a->b1; b++)
    for (i64 c0 = 0; c0 < a->C; c0 += LANES) {
      i64 L = a->C - c0 < LANES ? a->C - c0 : LANES;
      if (L == LANES && a->K == 3)
        dw_block(a->x, a->g, a->acc, b, a->H, a->W, a->C, a->Ho, a->Wo, 3, a->s, a->p, a->d, c0);
      else if (L == LANES && a->K == 5)
        dw_block(a->x, a->g, a->acc, b, a->H, a->W, a->C, a->Ho, a->Wo, 5, a->s, a->p, a->d, c0);
      else if (L == LANES && a->K == 7)
        dw_block(a->x, a->g, a->acc, b, a->H, a->W, a->C, a->Ho, a->Wo, 7, a->s, a->p, a->d, c0);
      else
        dw_block_any(a->x, a->g, a->acc, b, a->H, a->W, a->C, a->Ho, a->Wo, a->K, a->s, a->p, a->d, c0, L);
    }
  return 0;
}

#define MAXT 64
static int clamp_threads(int n, i64 work) {
  if (n < 1) n = 1;
  if (n > MAXT) n = MAXT;
  if (n > work) n = (int)work;
  return n < 1 ? 1 : n;
}

/* the n shares of the work, on PyTorch's own OpenMP threads (the process has loaded torch's libgomp, and this
   library binds to it by name): separate threads would fight ATen's spinning workers for the cores */
static void run_threads(void *(*fn)(void *), void *args, size_t size, int n) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(n) schedule(static, 1)
#endif
  for (int t = 0; t < n; t++) fn((char *)args + t * size);
}

/* out: [C][K*K] (the layout of a [C, 1, K, K] weight); returns 0, or -1 when out of memory */
int dw_wgrad_f32(const float *x, const float *g, float *out, i64 B, i64 H, i64 W, i64 C, i64 Ho, i64 Wo, i64 K,
                 i64 s, i64 p, i64 d, int nthreads) {
  int n = clamp_threads(nthreads, B);
  i64 size = K * K * C;
  float *bufs = calloc((size_t)(size * n), sizeof(float));
  if (!bufs) return -1;
  dw_arg args[MAXT];
  for (int t = 0; t < n; t++)
    args[t] = (dw_arg){x, g, bufs + t * size, B * t / n, B * (t + 1) / n, H, W, C, Ho, Wo, K, s, p, d};
  run_threads(dw_worker, args, sizeof(dw_arg), n);
  for (i64 tap = 0; tap < K * K; tap++)
    for (i64 c = 0; c < C; c++) {
      float v = 0.f;
      for (int t = 0; t < n; t++) v += bufs[t * size + tap * C + c];
      out[c * K * K + tap] = v;
    }
  free(bufs);
  return 0;
}

/* ---- 3x3 max pooling, padding 1, stride s (1 or 2): the window clipped to the image ---- */
/* Per output row: the column maxima of the (up to 3) input rows, with the row (dy) that holds each, then the
   maximum over (up to 3) columns. The element chosen is ATen's: the first maximum in row-major window order (the
   smallest code 3*dy+dx among equal values), or the last NaN. */
typedef struct { const float *x, *go; float *out; i64 b0, b1, H, W, C, Ho, Wo, s; float *work; } mp_arg;

static inline __attribute__((always_inline)) void mp_row(const float *restrict xb, i64 H, i64 W, const i64 C,
                   i64 Wo, i64 s, i64 ho, float *restrict vm,
                   float *restrict vd, float *restrict om, float *restrict oc, int want_codes) {
  const i64 WC = W * C;
  int first = 1;
  for (int dy = 0; dy < 3; dy++) {
    i64 h = ho * s - 1 + dy;
    if (h < 0 || h >= H) continue;
    const float *restrict xr = xb + h * WC;
    const float fdy = (float)dy;
    if (first) {
      SIMD
      for (i64 e = 0; e < WC; e++) { vm[e] = xr[e]; vd[e] = fdy; }
      first = 0;
    } else {
      SIMD
      for (i64 e = 0; e < WC; e++) {
        float v = xr[e], m = vm[e];
        int take = v > m || v != v;
        vm[e] = take ? v : m;
        vd[e] = take ? fdy : vd[e];
      }
    }
  }
  for (i64 wo = 0; wo < Wo; wo++) {
    float *restrict m = om + wo * C, *restrict k = oc + wo * C;
    int started = 0;
    for (int dx = 0; dx < 3; dx++) {
      i64 w = wo * s - 1 + dx;
      if (w < 0 || w >= W) continue;
      const float *restrict cv = vm + w * C, *restrict cd = vd + w * C;
      const float fdx = (float)dx;
      if (!started) {
        SIMD
        for (i64 c = 0; c < C; c++) { m[c] = cv[c]; k[c] = 3.f * cd[c] + fdx; }
        started = 1;
      } else if (!want_codes) {
        SIMD
        for (i64 c = 0; c < C; c++) { float v = cv[c]; m[c] = (v > m[c] || v != v) ? v : m[c]; }
      } else {
        SIMD
        for (i64 c = 0; c < C; c++) {
          float v = cv[c], mc = m[c], code = 3.f * cd[c] + fdx;
          int vn = v != v, mn = mc != mc;
          int take = vn ? (!mn || code > k[c]) : (!mn && (v > mc || (v == mc && code < k[c])));
          m[c] = take ? v : mc;
          k[c] = take ? code : k[c];
        }
      }
    }
  }
}

static inline __attribute__((always_inline)) void mp_fwd_body(mp_arg *a, const i64 C) {
  float *vm = a->work, *vd = vm + a->W * C, *oc = vd + a->W * C;
  for (i64 b = a->b0; b < a->b1; b++)
    for (i64 ho = 0; ho < a->Ho; ho++)
      mp_row(a->x + b * a->H * a->W * C, a->H, a->W, C, a->Wo, a->s, ho, vm, vd,
             a->out + ((b * a->Ho + ho) * a->Wo) * C, oc, 0);
}

/* the loops over channels unrolled for the common channel counts */
#define BY_CHANNELS(body, a)                       \
  switch ((a)->C) {                                \
    case 16: body(a, 16); break;                   \
    case 32: body(a, 32); break;                   \
    case 64: body(a, 64); break;                   \
    default: body(a, (a)->C);                      \
  }

static void *mp_fwd_worker(void *arg) {
  BY_CHANNELS(mp_fwd_body, (mp_arg *)arg);
  return 0;
}

/* gin[b,h,w,c] = sum of go[b,ho,wo,c] over the windows whose chosen element is (h, w): per image, the codes of
   every window, then a gather over the (at most 9) windows holding each input pixel: no scatter, no indices */
static inline __attribute__((always_inline)) void mp_bwd_body(mp_arg *a, const i64 C) {
  const i64 H = a->H, W = a->W, Ho = a->Ho, Wo = a->Wo, s = a->s;
  float *vm = a->work, *vd = vm + W * C, *om = vd + W * C, *codes = om + Wo * C;
  for (i64 b = a->b0; b < a->b1; b++) {
    for (i64 ho = 0; ho < Ho; ho++)
      mp_row(a->x + b * H * W * C, H, W, C, Wo, s, ho, vm, vd, om, codes + ho * Wo * C, 1);
    for (i64 h = 0; h < H; h++) {
      i64 ho_lo = h == 0 ? 0 : (h - 1 + s - 1) / s;  /* the windows with ho*s-1 <= h <= ho*s+1 */
      i64 ho_hi = (h + 1) / s < Ho - 1 ? (h + 1) / s : Ho - 1;
      float *restrict gi = a->out + ((b * H + h) * W) * C;
      SIMD
      for (i64 e = 0; e < W * C; e++) gi[e] = 0.f;
      for (i64 ho = ho_lo; ho <= ho_hi; ho++) {
        const float kdy = 3.f * (float)(h - (ho * s - 1));
        const float *restrict cd = codes + ho * Wo * C, *restrict go = a->go + ((b * Ho + ho) * Wo) * C;
        for (i64 w = 0; w < W; w++) {
          i64 wo_lo = w == 0 ? 0 : (w - 1 + s - 1) / s;
          i64 wo_hi = (w + 1) / s < Wo - 1 ? (w + 1) / s : Wo - 1;
          float *restrict gw = gi + w * C;
          for (i64 wo = wo_lo; wo <= wo_hi; wo++) {
            const float k = kdy + (float)(w - (wo * s - 1));
            const float *restrict cw = cd + wo * C, *restrict gow = go + wo * C;
            SIMD
            for (i64 c = 0; c < C; c++) gw[c] += cw[c] == k ? gow[c] : 0.f;
          }
        }
      }
    }
  }
}

static void *mp_bwd_worker(void *arg) {
  BY_CHANNELS(mp_bwd_body, (mp_arg *)arg);
  return 0;
}

static int mp_run(void *(*fn)(void *), const float *x, const float *go, float *out, i64 B, i64 H, i64 W, i64 C,
                  i64 Ho, i64 Wo, i64 s, int nthreads) {
  int n = clamp_threads(nthreads, B);
  i64 per = 2 * W * C + Wo * C + Ho * Wo * C + Ho * W * C;
  float *work = malloc((size_t)(n * per) * sizeof(float));
  if (!work) return -1;
  mp_arg args[MAXT];
  for (int t = 0; t < n; t++)
    args[t] = (mp_arg){x, go, out, B * t / n, B * (t + 1) / n, H, W, C, Ho, Wo, s, work + t * per};
  run_threads(fn, args, sizeof(mp_arg), n);
  free(work);
  return 0;
}

int maxpool3_fwd_f32(const float *x, float *out, i64 B, i64 H, i64 W, i64 C, i64 Ho, i64 Wo, i64 s, int nthreads) {
  return mp_run(mp_fwd_worker, x, 0, out, B, H, W, C, Ho, Wo, s, nthreads);
}

int maxpool3_bwd_f32(const float *x, const float *go, float *gin, i64 B, i64 H, i64 W, i64 C, i64 Ho, i64 Wo,
                     i64 s, int nthreads) {
  return mp_run(mp_bwd_worker, x, go, gin, B, H, W, C, Ho, Wo, s, nthreads);
}

/* ---- 3x3 average pooling, padding 1, stride s, padding not counted (count_include_pad=False) ---- */
static inline i64 win_lo(i64 i, i64 s) { return i == 0 ? 0 : (i - 1 + s - 1) / s; }  /* windows holding i */
static inline i64 win_hi(i64 i, i64 s, i64 n) { return (i + 1) / s < n - 1 ? (i + 1) / s : n - 1; }
static inline i64 win_count(i64 o, i64 s, i64 n) {  /* pixels of window o inside [0, n) */
  i64 a = o * s - 1, b = o * s + 1;
  return (b < n - 1 ? b : n - 1) - (a > 0 ? a : 0) + 1;
}

static inline __attribute__((always_inline)) void ap_fwd_body(mp_arg *a, const i64 C) {
  const i64 H = a->H, W = a->W, Ho = a->Ho, Wo = a->Wo, s = a->s;
  float *restrict vs = a->work;
  for (i64 b = a->b0; b < a->b1; b++)
    for (i64 ho = 0; ho < Ho; ho++) {
      SIMD
      for (i64 e = 0; e < W * C; e++) vs[e] = 0.f;
      for (int dy = 0; dy < 3; dy++) {
        i64 h = ho * s - 1 + dy;
        if (h < 0 || h >= H) continue;
        const float *restrict xr = a->x + ((b * H + h) * W) * C;
        SIMD
        for (i64 e = 0; e < W * C; e++) vs[e] += xr[e];
      }
      i64 ch = win_count(ho, s, H);
      for (i64 wo = 0; wo < Wo; wo++) {
        float *restrict o = a->out + ((b * Ho + ho) * Wo + wo) * C;
        const float inv = 1.f / (float)(ch * win_count(wo, s, W));
        i64 w0 = wo * s - 1 > 0 ? wo * s - 1 : 0, w1 = wo * s + 1 < W - 1 ? wo * s + 1 : W - 1;
        SIMD
        for (i64 c = 0; c < C; c++) o[c] = 0.f;
        for (i64 w = w0; w <= w1; w++) {
          const float *restrict v = vs + w * C;
          SIMD
          for (i64 c = 0; c < C; c++) o[c] += v[c];
        }
        SIMD
        for (i64 c = 0; c < C; c++) o[c] *= inv;
      }
    }
}

/* gin[b,h,w] = sum over the windows holding (h, w) of go / count: per output row, the sums over the windows of
   each input column (go already divided by the counts), then per input row the sum over its output rows */
static inline __attribute__((always_inline)) void ap_bwd_body(mp_arg *a, const i64 C) {
  const i64 H = a->H, W = a->W, Ho = a->Ho, Wo = a->Wo, s = a->s;
  float *restrict hs = a->work;  /* [Ho][W][C] */
  for (i64 b = a->b0; b < a->b1; b++) {
    for (i64 ho = 0; ho < Ho; ho++) {
      i64 ch = win_count(ho, s, H);
      for (i64 w = 0; w < W; w++) {
        float *restrict r = hs + (ho * W + w) * C;
        SIMD
        for (i64 c = 0; c < C; c++) r[c] = 0.f;
        for (i64 wo = win_lo(w, s); wo <= win_hi(w, s, Wo); wo++) {
          const float inv = 1.f / (float)(ch * win_count(wo, s, W));
          const float *restrict g = a->go + ((b * Ho + ho) * Wo + wo) * C;
          SIMD
          for (i64 c = 0; c < C; c++) r[c] += g[c] * inv;
        }
      }
    }
    for (i64 h = 0; h < H; h++) {
      float *restrict gi = a->out + ((b * H + h) * W) * C;
      SIMD
      for (i64 e = 0; e < W * C; e++) gi[e] = 0.f;
      for (i64 ho = win_lo(h, s); ho <= win_hi(h, s, Ho); ho++) {
        const float *restrict r = hs + ho * W * C;
        SIMD
        for (i64 e = 0; e < W * C; e++) gi[e] += r[e];
      }
    }
  }
}

static void *ap_fwd_worker(void *arg) { BY_CHANNELS(ap_fwd_body, (mp_arg *)arg); return 0; }
static void *ap_bwd_worker(void *arg) { BY_CHANNELS(ap_bwd_body, (mp_arg *)arg); return 0; }

int avgpool3_fwd_f32(const float *x, float *out, i64 B, i64 H, i64 W, i64 C, i64 Ho, i64 Wo, i64 s, int nthreads) {
  return mp_run(ap_fwd_worker, x, 0, out, B, H, W, C, Ho, Wo, s, nthreads);
}

int avgpool3_bwd_f32(const float *go, float *gin, i64 B, i64 H, i64 W, i64 C, i64 Ho, i64 Wo, i64 s,
                     int nthreads) {
  return mp_run(ap_bwd_worker, 0, go, gin, B, H, W, C, Ho, Wo, s, nthreads);
}

/* ---- training BatchNorm without affine parameters, channels-last [N][C] (N = batch * height * width) ----
   out = (z - mean) * invstd, the running statistics updated as nn.BatchNorm2d does (unbiased variance), and,
   optionally, acc += gate * out in the same pass (the mixed op's weighted sum). Sums in double, of z minus the
   first row (a shift that keeps the variance exact enough when the mean is far from 0). */
typedef struct { const float *z; float *out, *acc; double *part; i64 r0, r1, C; const float *mean, *invstd;
                 float gate; const float *shift; int relu; } bn_arg;

static inline __attribute__((always_inline)) void bn_stats_body(bn_arg *a, const i64 C) {
  double *restrict s = a->part, *restrict q = a->part + C;
  for (i64 c = 0; c < C; c++) { s[c] = 0.0; q[c] = 0.0; }
  for (i64 r = a->r0; r < a->r1; r++) {
    const float *restrict zr = a->z + r * C;
    SIMD
    for (i64 c = 0; c < C; c++) { double v = (double)zr[c] - a->shift[c]; s[c] += v; q[c] += v * v; }
  }
}

static inline __attribute__((always_inline)) void bn_norm_body(bn_arg *a, const i64 C) {
  const float *restrict mean = a->mean, *restrict invstd = a->invstd;
  const float gate = a->gate;
  for (i64 r = a->r0; r < a->r1; r++) {
    const float *restrict zr = a->z + r * C;
    float *restrict o = a->out ? a->out + r * C : 0;
    if (a->acc && !o) {  /* the sum alone: the caller keeps no output */
      float *restrict ac = a->acc + r * C;
      SIMD
      for (i64 c = 0; c < C; c++) ac[c] += gate * ((zr[c] - mean[c]) * invstd[c]);
    } else if (a->acc) {
      float *restrict ac = a->acc + r * C;
      SIMD
      for (i64 c = 0; c < C; c++) { float y = (zr[c] - mean[c]) * invstd[c]; o[c] = y; ac[c] += gate * y; }
    } else if (a->relu) {  /* relu(BN(z)), NaN kept as F.relu keeps it */
      SIMD
      for (i64 c = 0; c < C; c++) { float y = (zr[c] - mean[c]) * invstd[c]; o[c] = y <= 0.f ? 0.f : y; }
    } else {
      SIMD
      for (i64 c = 0; c < C; c++) o[c] = (zr[c] - mean[c]) * invstd[c];
    }
  }
}

static void *bn_stats_worker(void *arg) { BY_CHANNELS(bn_stats_body, (bn_arg *)arg); return 0; }
static void *bn_norm_worker(void *arg) { BY_CHANNELS(bn_norm_body, (bn_arg *)arg); return 0; }

/* mean and invstd: [C] outputs; rm, rv: running statistics updated in place (may be null); relu: out is
   relu(BN(z)) (no acc then); out may be null when acc is given (the sum alone) */
int bn_fwd_f32(const float *z, float *out, float *acc, float gate, float *mean, float *invstd, float *rm, float *rv,
               i64 N, i64 C, double momentum, double eps, int relu, int nthreads) {
  if (N < 1) return -2;
  int n = clamp_threads(nthreads, N);
  double *part = malloc((size_t)(2 * C * n) * sizeof(double));
  if (!part) return -1;
  bn_arg args[MAXT];
  for (int t = 0; t < n; t++)
    args[t] = (bn_arg){z, out, acc, part + 2 * C * t, N * t / n, N * (t + 1) / n, C, mean, invstd, gate, z, relu};
  run_threads(bn_stats_worker, args, sizeof(bn_arg), n);
  for (i64 c = 0; c < C; c++) {
    double s = 0.0, q = 0.0;
    for (int t = 0; t < n; t++) { s += part[2 * C * t + c]; q += part[2 * C * t + C + c]; }
    /* sums of z - z[0]: the variance keeps its digits when a channel's mean dwarfs its spread */
    double d = s / (double)N, var = q / (double)N - d * d, m = (double)z[c] + d;
    if (var < 0.0) var = 0.0;
    mean[c] = (float)m;
    invstd[c] = (float)(1.0 / sqrt(var + eps));
    if (rm) rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * m);
    if (rv) rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * (N > 1 ? var * (double)N / (double)(N - 1) : var));
  }
  free(part);
  run_threads(bn_norm_worker, args, sizeof(bn_arg), n);
  return 0;
}

/* out = (z - mean) * invstd (relu'd with relu) with given statistics: the normalisation pass of bn_fwd_f32 alone,
   to make a BN output again in a backward pass exactly as the forward made it */
int bn_apply_f32(const float *z, float *out, const float *mean, const float *invstd, i64 N, i64 C, int relu,
                 int nthreads) {
  if (N < 1) return -2;
  int n = clamp_threads(nthreads, N);
  bn_arg args[MAXT];
  for (int t = 0; t < n; t++)
    args[t] = (bn_arg){z, out, 0, 0, N * t / n, N * (t + 1) / n, C, mean, invstd, 1.f, z, relu};
  run_threads(bn_norm_worker, args, sizeof(bn_arg), n);
  return 0;
}

/* the backward of that BN, from its output y (mean 0, invstd 1) with a per-channel weight w (the real invstd,
   times the gate): gin = w * (g - mean(g) - y * mean(g * y)), and gw = sum(g * y) (the gate's gradient). With
   relu, g is first masked by y > 0 (or NaN): the backward of relu(BN(z)), as threshold_backward(g, y, 0) would
   give it, in the same passes. With zm and zs (the forward's mean and invstd), y holds BN's input z instead and
   each output value is made again on the way, (z - zm) * zs, as the forward made it: no normalised copy */
typedef struct { const float *g, *y; float *gin; double *part; i64 r0, r1, C; const float *w, *ms, *md, *zm, *zs;
                 int relu; } bnb_arg;

/* g where y > 0 (or NaN), else 0: threshold_backward(g, y, 0) as a bit mask, with no conditional load, so that
   the loops around it vectorise (a select on the load compiled to a branch, 10x slower on random signs) */
static inline __attribute__((always_inline)) float relu_grad(float g, float y) {
  uint32_t bits;
  memcpy(&bits, &g, sizeof bits);
  bits &= -(uint32_t)!(y <= 0.f);
  memcpy(&g, &bits, sizeof g);
  return g;
}

static inline __attribute__((always_inline)) void bnb_stats_rows(bnb_arg *a, const i64 C, const int relu,
                                                                 const int centred) {
  double *restrict sg = a->part, *restrict sd = a->part + C;
  const float *restrict zm = a->zm, *restrict zs = a->zs;
  for (i64 c = 0; c < C; c++) { sg[c] = 0.0; sd[c] = 0.0; }
  for (i64 r = a->r0; r < a->r1; r++) {
    const float *restrict g = a->g + r * C, *restrict y = a->y + r * C;
    SIMD
    for (i64 c = 0; c < C; c++) {
      const float yv = centred ? (y[c] - zm[c]) * zs[c] : y[c];
      const float gv = relu ? relu_grad(g[c], yv) : g[c];
      sg[c] += gv; sd[c] += (double)gv * yv;
    }
  }
}

static inline __attribute__((always_inline)) void bnb_apply_rows(bnb_arg *a, const i64 C, const int relu,
                                                                 const int centred) {
  const float *restrict w = a->w, *restrict ms = a->ms, *restrict md = a->md, *restrict zm = a->zm,
              *restrict zs = a->zs;
  for (i64 r = a->r0; r < a->r1; r++) {
    const float *restrict g = a->g + r * C, *restrict y = a->y + r * C;
    float *restrict o = a->gin + r * C;
    SIMD
    for (i64 c = 0; c < C; c++) {
      const float yv = centred ? (y[c] - zm[c]) * zs[c] : y[c];
      const float gv = relu ? relu_grad(g[c], yv) : g[c];
      o[c] = w[c] * (gv - ms[c] - yv * md[c]);
    }
  }
}

/* the four (relu, centred) variants, each compiled with constant flags so that its inner loop has no branch */
#define BNB_VARIANTS(rows, a, C)                                              \
  do {                                                                        \
    if ((a)->relu) { if ((a)->zm) rows(a, C, 1, 1); else rows(a, C, 1, 0); }  \
    else { if ((a)->zm) rows(a, C, 0, 1); else rows(a, C, 0, 0); }            \
  } while (0)

static inline __attribute__((always_inline)) void bnb_stats_body(bnb_arg *a, const i64 C) {
  BNB_VARIANTS(bnb_stats_rows, a, C);
}

static inline __attribute__((always_inline)) void bnb_apply_body(bnb_arg *a, const i64 C) {
  BNB_VARIANTS(bnb_apply_rows, a, C);
}

static void *bnb_stats_worker(void *arg) { BY_CHANNELS(bnb_stats_body, (bnb_arg *)arg); return 0; }
static void *bnb_apply_worker(void *arg) { BY_CHANNELS(bnb_apply_body, (bnb_arg *)arg); return 0; }

int bn_bwd_f32(const float *g, const float *y, const float *w, float *gin, float *gw, const float *zm,
               const float *zs, i64 N, i64 C, int relu, int nthreads) {
  if (N < 1) return -2;
  int n = clamp_threads(nthreads, N);
  double *part = malloc((size_t)(2 * C * n) * sizeof(double));
  float *ms = malloc((size_t)(2 * C) * sizeof(float));
  if (!part || !ms) { free(part); free(ms); return -1; }
  float *md = ms + C;
  bnb_arg args[MAXT];
  for (int t = 0; t < n; t++)
    args[t] = (bnb_arg){g, y, gin, part + 2 * C * t, N * t / n, N * (t + 1) / n, C, w, ms, md, zm, zs,
                        relu};
  run_threads(bnb_stats_worker, args, sizeof(bnb_arg), n);
  for (i64 c = 0; c < C; c++) {
    double sg = 0.0, sd = 0.0;
    for (int t = 0; t < n; t++) { sg += part[2 * C * t + c]; sd += part[2 * C * t + C + c]; }
    ms[c] = (float)(sg / (double)N);
    md[c] = (float)(sd / (double)N);
    if (gw) gw[c] = (float)sd;
  }
  if (gin) run_threads(bnb_apply_worker, args, sizeof(bnb_arg), n);
  free(part);
  free(ms);
  return 0;
}
