# xfer_torch_from_wheel(TARGET SITE <dir> [CUDA]): an imported target for the LibTorch inside an unpacked (or pip
# installed) PyPI torch wheel, from plain include and link flags — no find_package(Torch), whose Caffe2 config
# insists on a CUDA toolkit (nvcc and its headers) as soon as the wheel is a CUDA build (gpu-review C3).
#   SITE  the folder holding the wheel's torch/ (site-packages, or ./run torch2's build/torch2/site)
#   CUDA  also libtorch_cuda and libc10_cuda, the CUDA runtime's headers and library from the wheel's nvidia/* folders
#         (cu13 layout nvidia/cu13, cu12 layout nvidia/cuda_runtime), and NCCL (nvidia/nccl) when it is there
# Without CUDA the target is the wheel's CPU LibTorch: libtorch_cpu and libc10 (libtorch_cpu names libcudart and
# libcupti, Kineto's; they must sit in SITE/nvidia/cu*/lib, where its RPATH looks, or on the loader's path).
# XFER_TORCH_CXX11_ABI (default 1: every PyPI wheel since 2.7, and Debian) must match the wheel's
# torch._C._GLIBCXX_USE_CXX11_ABI, or nothing that passes a std::string across links.
# Sets in the caller's scope: <TARGET>_VERSION (from torch/version.py), <TARGET>_NCCL (the NCCL library, if found).
include_guard(GLOBAL)

function(xfer_torch_from_wheel target)
  cmake_parse_arguments(ARG "CUDA" "SITE" "" ${ARGN})
  set(t "${ARG_SITE}/torch")
  if(NOT EXISTS "${t}/include/torch/csrc/api/include/torch/torch.h" OR NOT EXISTS "${t}/lib/libtorch_cpu.so")
    message(FATAL_ERROR "xfer: ${ARG_SITE} holds no unpacked torch wheel (torch/include, torch/lib/libtorch_cpu.so)")
  endif()
  file(STRINGS "${t}/version.py" _v REGEX "^__version__")
  string(REGEX REPLACE "^__version__ = '([^']*)'.*" "\\1" _v "${_v}")
  if(NOT DEFINED XFER_TORCH_CXX11_ABI)
    set(XFER_TORCH_CXX11_ABI 1)
  endif()
  add_library(${target} INTERFACE IMPORTED GLOBAL)
  set(_inc "${t}/include" "${t}/include/torch/csrc/api/include")
  set(_libs "${t}/lib/libtorch_cpu.so" "${t}/lib/libc10.so")
  set(_defs "_GLIBCXX_USE_CXX11_ABI=${XFER_TORCH_CXX11_ABI}")
  set(_opts)
  if(ARG_CUDA)
    file(GLOB _cuda_inc "${ARG_SITE}/nvidia/cu[0-9]*/include" "${ARG_SITE}/nvidia/cuda_runtime/include")
    find_library(_cudart_${target} NAMES cudart libcudart.so.13 libcudart.so.12 NO_DEFAULT_PATH
                 PATHS ${ARG_SITE}/nvidia/cu13/lib ${ARG_SITE}/nvidia/cu12/lib ${ARG_SITE}/nvidia/cuda_runtime/lib)
    if(NOT _cuda_inc OR NOT _cudart_${target} OR NOT EXISTS "${t}/lib/libtorch_cuda.so")
      message(FATAL_ERROR "xfer: ${ARG_SITE}: a CUDA build needs torch/lib/libtorch_cuda.so and the CUDA runtime "
                          "wheel's headers and library (nvidia/cu*/ or nvidia/cuda_runtime/); found '${_cuda_inc}' "
                          "'${_cudart_${target}}'")
    endif()
    list(APPEND _inc ${_cuda_inc})
    # libtorch_cuda registers the CUDA kernels from static initialisers: linked even though no symbol is used.
    list(APPEND _opts "LINKER:--no-as-needed,${t}/lib/libtorch_cuda.so,--as-needed")
    list(APPEND _libs "${t}/lib/libtorch.so" "${t}/lib/libc10_cuda.so" "${_cudart_${target}}")
    find_path(_nccl_inc_${target} nccl.h PATHS "${ARG_SITE}/nvidia/nccl/include" NO_DEFAULT_PATH)
    find_library(_nccl_${target} NAMES nccl libnccl.so.2 PATHS "${ARG_SITE}/nvidia/nccl/lib" NO_DEFAULT_PATH)
    if(_nccl_inc_${target} AND _nccl_${target})
      list(APPEND _inc "${_nccl_inc_${target}}")
      set(${target}_NCCL "${_nccl_${target}}" PARENT_SCOPE)
    endif()
  endif()
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_inc}"
                        INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_inc}" INTERFACE_LINK_LIBRARIES "${_libs}"
                        INTERFACE_COMPILE_DEFINITIONS "${_defs}" INTERFACE_LINK_OPTIONS "${_opts}")
  set(${target}_VERSION "${_v}" PARENT_SCOPE)
  set(_kind CPU)
  if(ARG_CUDA)
    set(_kind CUDA)
  endif()
  message(STATUS "xfer: LibTorch ${_v} (${target}, ${_kind}) from the wheel in ${ARG_SITE}, plain flags")
endfunction()
