// Run-time choice of the CPU kernels' instruction set. The kernel files are compiled once per
// instruction set (CMakeLists.txt); this file picks the widest one the CPU supports, or the one
// named by the environment variable LRP_KERNELS_ISA (base, avx2, avx512).
#include <cstdlib>
#include <stdexcept>

#include "common.h"
#include "kernels.h"

namespace lrp {
namespace cpu {
namespace {

// Kernels{"ns", &ns::<kernel>...} for every CPU kernel (LRP_CPU_KERNELS, kernels.h), in its order.
// The using-directive lets the list name the kernels unqualified; nothing else in lrp or lrp::cpu
// bears a kernel's name.
#define LRP_TABLE_ENTRY(name, params) &name,
#define LRP_KERNEL_TABLE(ns)                              \
  [] {                                                    \
    using namespace ::lrp::ns;                            \
    return Kernels{#ns, LRP_CPU_KERNELS(LRP_TABLE_ENTRY)}; \
  }()

std::vector<Kernels> supported_tables() {
  std::vector<Kernels> tables{LRP_KERNEL_TABLE(base)};
#ifdef LRP_X86_ISAS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    tables.push_back(LRP_KERNEL_TABLE(avx2));
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      tables.push_back(LRP_KERNEL_TABLE(avx512));
  }
#endif
  return tables;
}

const std::vector<Kernels>& tables() {
  static const std::vector<Kernels> t = supported_tables();
  return t;
}

const Kernels* find(const std::string& name) {
  for (const Kernels& k : tables())
    if (name == k.isa) return &k;
  return nullptr;
}

const Kernels*& current() {
  static const Kernels* k = [] {
    const char* env = std::getenv("LRP_KERNELS_ISA");
    if (env != nullptr && *env != '\0') {
      const Kernels* chosen = find(env);
      if (chosen != nullptr) return chosen;
    }
    return &tables().back();
  }();
  return k;
}

}  // namespace

const Kernels& kernels() { return *current(); }

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const Kernels& k : tables()) names.emplace_back(k.isa);
  return names;
}

void set_isa(const std::string& name) {
  const Kernels* k = find(name);
  if (k == nullptr) {
    std::string valid;
    for (const std::string& n : supported_isas()) valid += (valid.empty() ? "" : ", ") + n;
    throw std::invalid_argument("instruction set '" + name + "' is not compiled in or not " +
                                "supported by this CPU (supported: " + valid + ")");
  }
  current() = k;
}

int num_threads() { return max_threads(); }

}  // namespace cpu
}  // namespace lrp
