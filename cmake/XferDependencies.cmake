# Every third-party package xfer uses, found once, as imported targets.
# A cluster user overrides any of them through CMAKE_PREFIX_PATH (an official CUDA LibTorch, a site Kokkos):
# nothing below names a Debian path.

find_package(Threads REQUIRED)

# MPI: C bindings only (Boost.MPI wraps them); the sweep runner and the gradient all-reduce use it.
find_package(MPI REQUIRED COMPONENTS C)

# HDF5: prefer the parallel build; if libhdf5-dev is also installed, CMake silently picks the serial one.
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL AND NOT XFER_ALLOW_SERIAL_HDF5)
  message(FATAL_ERROR "xfer: found a serial HDF5 (${HDF5_C_LIBRARIES}); install libhdf5-openmpi-dev, remove "
                      "libhdf5-dev, or configure with -DXFER_ALLOW_SERIAL_HDF5=ON")
endif()
if(NOT TARGET hdf5::hdf5)
  add_library(hdf5::hdf5 INTERFACE IMPORTED)
  set_target_properties(hdf5::hdf5 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${HDF5_C_INCLUDE_DIRS}"
                                              INTERFACE_LINK_LIBRARIES "${HDF5_C_LIBRARIES}")
endif()

# Kokkos: metrics and resampling kernels. Debian's Trilinos copy (Serial only) exports a wrong include dir.
find_package(Kokkos REQUIRED)
if(Kokkos_INCLUDE_DIRS AND TARGET Kokkos::kokkos)
  set_target_properties(Kokkos::kokkos PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${Kokkos_INCLUDE_DIRS}")
endif()

# Boost.Serialization + Boost.MPI: trial descriptors, results and checkpoints' metadata.
find_package(Boost 1.74 REQUIRED COMPONENTS serialization mpi)

# LibTorch: only model/ and train/ link it, PRIVATE (its compile definitions leak otherwise).
find_package(Torch REQUIRED)

# OpenCV: decode and transform images. Debian ships OpenCVConfig.cmake only in libopencv-dev (250 packages); with
# just the core/imgproc/imgcodecs -dev packages, find the three libraries directly. Either way: xfer::opencv.
find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs)
add_library(xfer_opencv INTERFACE)
add_library(xfer::opencv ALIAS xfer_opencv)
if(OpenCV_FOUND)
  target_link_libraries(xfer_opencv INTERFACE opencv_core opencv_imgproc opencv_imgcodecs)
  message(STATUS "xfer: OpenCV ${OpenCV_VERSION} from ${OpenCV_DIR}")
else()
  find_path(XFER_OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
  set(_cv_libs)
  foreach(_c core imgproc imgcodecs)
    find_library(XFER_OPENCV_${_c}_LIBRARY NAMES opencv_${_c})
    if(NOT XFER_OPENCV_${_c}_LIBRARY)
      message(FATAL_ERROR "xfer: OpenCV ${_c} not found (install libopencv-${_c}-dev, or point CMAKE_PREFIX_PATH "
                          "at an OpenCV installation)")
    endif()
    list(APPEND _cv_libs "${XFER_OPENCV_${_c}_LIBRARY}")
  endforeach()
  if(NOT XFER_OPENCV_INCLUDE_DIR)
    message(FATAL_ERROR "xfer: OpenCV headers (opencv2/core.hpp) not found")
  endif()
  target_include_directories(xfer_opencv SYSTEM INTERFACE "${XFER_OPENCV_INCLUDE_DIR}")
  target_link_libraries(xfer_opencv INTERFACE ${_cv_libs})
  message(STATUS "xfer: OpenCV (core, imgproc, imgcodecs) from ${XFER_OPENCV_INCLUDE_DIR}")
endif()
find_package(tomlplusplus REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(ZLIB REQUIRED)
# libjpeg(-turbo): xfer decodes JPEGs with it directly, as Pillow does (OpenCV handles every other format).
find_package(JPEG REQUIRED)

message(STATUS "xfer: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
message(STATUS "xfer: Kokkos ${Kokkos_VERSION} from ${Kokkos_DIR}")
message(STATUS "xfer: HDF5 ${HDF5_VERSION} (parallel: ${HDF5_IS_PARALLEL})")
