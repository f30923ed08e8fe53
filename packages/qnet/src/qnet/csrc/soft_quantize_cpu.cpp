// Fused CPU kernels of qnet's soft quantizer (opt-in: QNET_NATIVE_KERNEL=1, compiled on first use).
//
//   forward:  y  = base + sum_i yc_i sig(h x + nb_i)
//             g' = sum_i gc_i sig_i (1 - sig_i)       (sig_i at (hg, nbg) when a surrogate gradient is asked)
//   backward: gx = rx gy g',  <gy g', x>,  <gy, yb>
//
// One pass over memory each (the eager kernel needs four passes per level over cache-sized chunks). Sigmoids
// are 1 / (1 + exp(-z)) with ATen's vectorised exp; exp overflows to inf and underflows to 0, so any
// temperature gives exact 0/1 saturation, and NaN propagates. The dot products are summed per fixed block
// of elements and the block sums added in order in double, so results do not depend on the thread count.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <optional>
#include <vector>

namespace {

using at::vec::Vectorized;
constexpr int64_t kBlock = 1 << 14;  // elements per parallel task and per partial dot product

template <typename T>
inline Vectorized<T> vsigmoid(const Vectorized<T>& z) {
  const Vectorized<T> one(T(1));
  Vectorized<T> s;
  if constexpr (std::is_same_v<T, float>) {
    s = one / (one + (-z).exp_u20());
  } else {
    s = one / (one + (-z).exp());
  }
  // the fast exp maps NaN to a finite value: keep NaN inputs NaN, as the eager kernels do
  return Vectorized<T>::blendv(s, z, z.isnan());
}

template <typename T>
inline T ssigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));
}

struct Levels {
  std::vector<double> nb, yc, gc, nbg;
  double h, hg, base;
  bool surrogate;
};

template <typename T>
void forward_impl(const T* x, T* y, T* g, int64_t n, const Levels& L) {
  using V = Vectorized<T>;
  const int64_t k = static_cast<int64_t>(L.nb.size());
  at::parallel_for(0, (n + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    const int64_t end = std::min(n, b1 * kBlock);
    int64_t j = b0 * kBlock;
    const V one{T(1)}, h{T(L.h)}, hg{T(L.hg)}, base{T(L.base)};
    for (; j + V::size() <= end; j += V::size()) {
      const V xv = V::loadu(x + j);
      const V zx = xv * h;
      V yv = base;
      V gv{T(0)};
      for (int64_t i = 0; i < k; ++i) {
        const V s = vsigmoid<T>(zx + V(T(L.nb[i])));
        yv = at::vec::fmadd(V(T(L.yc[i])), s, yv);
        if (g != nullptr) {
          const V sg = L.surrogate ? vsigmoid<T>(xv * hg + V(T(L.nbg[i]))) : s;
          gv = at::vec::fmadd(V(T(L.gc[i])), sg * (one - sg), gv);
        }
      }
      yv.store(y + j);
      if (g != nullptr) gv.store(g + j);
    }
    for (; j < end; ++j) {
      const T zx = x[j] * T(L.h);
      T yv = T(L.base), gv = T(0);
      for (int64_t i = 0; i < k; ++i) {
        const T s = ssigmoid<T>(zx + T(L.nb[i]));
        yv += T(L.yc[i]) * s;
        if (g != nullptr) {
          const T sg = L.surrogate ? ssigmoid<T>(x[j] * T(L.hg) + T(L.nbg[i])) : s;
          gv += T(L.gc[i]) * sg * (T(1) - sg);
        }
      }
      y[j] = yv;
      if (g != nullptr) g[j] = gv;
    }
  });
}

template <typename T>
void backward_impl(const T* gy, const T* x, const T* yb, const T* g, T* gx, int64_t n, double rx, double* dot_x,
                   double* dot_y) {
  using V = Vectorized<T>;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> px(blocks, 0.0), py(blocks, 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    const V r{T(rx)};
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t start = b * kBlock, end = std::min(n, start + kBlock);
      V ax{T(0)}, ay{T(0)};
      T sx = T(0), sy = T(0);
      int64_t j = start;
      for (; j + V::size() <= end; j += V::size()) {
        const V gyv = V::loadu(gy + j);
        if (yb != nullptr) ay = at::vec::fmadd(gyv, V::loadu(yb + j), ay);
        if (g != nullptr) {
          const V u = gyv * V::loadu(g + j);
          if (dot_x != nullptr) ax = at::vec::fmadd(u, V::loadu(x + j), ax);
          if (gx != nullptr) (u * r).store(gx + j);
        }
      }
      for (; j < end; ++j) {
        if (yb != nullptr) sy += gy[j] * yb[j];
        if (g != nullptr) {
          const T u = gy[j] * g[j];
          if (dot_x != nullptr) sx += u * x[j];
          if (gx != nullptr) gx[j] = u * T(rx);
        }
      }
      px[b] = static_cast<double>(at::vec::vec_reduce_all<T>(std::plus<V>(), ax)) + sx;
      py[b] = static_cast<double>(at::vec::vec_reduce_all<T>(std::plus<V>(), ay)) + sy;
    }
  });
  double tx = 0.0, ty = 0.0;
  for (int64_t b = 0; b < blocks; ++b) {
    tx += px[b];
    ty += py[b];
  }
  if (dot_x != nullptr) *dot_x = tx;
  if (dot_y != nullptr) *dot_y = ty;
}

void check_input(const torch::Tensor& t, const torch::Tensor& like, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == like.scalar_type() && t.is_contiguous() &&
                  t.numel() == like.numel(),
              "qnet native kernel: '", name, "' must be a contiguous CPU tensor of x's dtype and size");
}

}  // namespace

// (y, g') with g' None unless need_g; nbg empty unless a surrogate gradient temperature is used.
std::vector<torch::Tensor> forward(const torch::Tensor& x, std::vector<double> nb, std::vector<double> yc,
                                   std::vector<double> gc, double h, double base, bool need_g, double hg,
                                   std::vector<double> nbg) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "qnet native kernel: x must be a contiguous CPU tensor");
  TORCH_CHECK(nb.size() == yc.size() && nb.size() == gc.size() && (nbg.empty() || nbg.size() == nb.size()),
              "qnet native kernel: level lists differ in length");
  const bool surrogate = !nbg.empty();
  Levels L{std::move(nb), std::move(yc), std::move(gc), std::move(nbg), h, hg, base, surrogate};
  auto y = torch::empty_like(x);
  torch::Tensor g = need_g ? torch::empty_like(x) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "qnet_soft_quantize_forward", [&] {
    forward_impl<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                           need_g ? g.data_ptr<scalar_t>() : nullptr, x.numel(), L);
  });
  return {y, g};
}

// (gx or None, <gy g', x>, <gy, yb>) as (tensor, 0-dim double tensors); yb and g may be None.
std::vector<torch::Tensor> backward(const torch::Tensor& gy, const torch::Tensor& x,
                                    const std::optional<torch::Tensor>& yb_opt,
                                    const std::optional<torch::Tensor>& g_opt, double rx, bool need_x,
                                    bool need_dot_x) {
  const torch::Tensor yb = yb_opt.has_value() ? *yb_opt : torch::Tensor();
  const torch::Tensor g = g_opt.has_value() ? *g_opt : torch::Tensor();
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "qnet native kernel: x must be a contiguous CPU tensor");
  check_input(gy, x, "gy");
  if (yb.defined()) check_input(yb, x, "yb");
  if (g.defined()) check_input(g, x, "g");
  TORCH_CHECK(g.defined() || !(need_x || need_dot_x), "qnet native kernel: g' is needed for dx and <gy g', x>");
  torch::Tensor gx = need_x ? torch::empty_like(x) : torch::Tensor();
  double dx = 0.0, dy = 0.0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "qnet_soft_quantize_backward", [&] {
    backward_impl<scalar_t>(gy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                            yb.defined() ? yb.data_ptr<scalar_t>() : nullptr,
                            g.defined() ? g.data_ptr<scalar_t>() : nullptr,
                            need_x ? gx.data_ptr<scalar_t>() : nullptr, x.numel(), rx,
                            need_dot_x ? &dx : nullptr, yb.defined() ? &dy : nullptr);
  });
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  return {gx, torch::scalar_tensor(dx, opts), torch::scalar_tensor(dy, opts)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused soft-quantizer forward (y, g')");
  m.def("backward", &backward, "fused soft-quantizer backward (dx, <gy g', x>, <gy, yb>)");
}
