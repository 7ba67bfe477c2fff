# The torch2 build: xfer's LibTorch code — src/model and the torch engine of src/train, the same sources as
# xfer_model and xfer_torch_engine — compiled a second time against LibTorch 2.x (the CPU libraries of PyPI's torch
# wheel, unpacked by `./run torch2` into XFER_TORCH2_SITE), linked with the torch-free modules of this build, and the
# unit tests that touch it run on the CPU (label torch2: ctest --test-dir build -L torch2). The main build stays on
# Debian's LibTorch 1.13; this is where the `#if TORCH_VERSION_MAJOR >= 2` code (fused optimizers, the new autocast
# and TF32 APIs) is compiled and tested. Binaries land in build/torch2/.
include(GoogleTest)
include(XferTorchWheel)
xfer_torch_from_wheel(xfer_torch2 SITE "${XFER_TORCH2_SITE}")
set(XFER_TORCH2_BIN "${CMAKE_BINARY_DIR}/torch2")

# A copy of a LibTorch target of the main build, over the 2.x LibTorch: same sources, same other dependencies.
function(xfer_torch2_copy copy original)
  get_target_property(_src ${original} SOURCES)
  get_target_property(_dir ${original} SOURCE_DIR)
  set(_abs)
  foreach(_s IN LISTS _src)
    if(NOT IS_ABSOLUTE "${_s}")
      set(_s "${_dir}/${_s}")
    endif()
    list(APPEND _abs "${_s}")
  endforeach()
  set(_src ${_abs})
  get_target_property(_libs ${original} LINK_LIBRARIES)
  list(TRANSFORM _libs REPLACE "^torch$" xfer_torch2)
  list(TRANSFORM _libs REPLACE "^xfer::model$" xfer_model_torch2)
  list(FILTER _libs EXCLUDE REGEX "^c10_cuda$")
  add_library(${copy} STATIC ${_src})
  target_link_libraries(${copy} PUBLIC ${_libs})
  target_include_directories(${copy} PUBLIC "${_dir}" "${PROJECT_SOURCE_DIR}/include")
  xfer_warnings(${copy})
  xfer_test_optimisation(${copy})
endfunction()
xfer_torch2_copy(xfer_model_torch2 xfer_model)
xfer_torch2_copy(xfer_torch_engine_torch2 xfer_torch_engine)

# xfer_torch2_test(NAME SOURCES...): a GoogleTest binary over the torch2 engine, its cases as CTest tests
# "torch2.<Suite>.<Case>" with the label torch2.
function(xfer_torch2_test name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE xfer_test_support xfer_torch_engine_torch2)
  target_include_directories(${name} PRIVATE "${PROJECT_SOURCE_DIR}/bench/gpu")
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${XFER_TORCH2_BIN}")
  xfer_warnings(${name})
  xfer_test_optimisation(${name})
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST TEST_PREFIX "torch2." PROPERTIES TIMEOUT 300 LABELS torch2)
endfunction()
xfer_torch2_test(torch2_train_engine_test "${PROJECT_SOURCE_DIR}/tests/unit/train_engine_test.cpp")
xfer_torch2_test(torch2_fused_optimizer_test "${PROJECT_SOURCE_DIR}/tests/unit/fused_optimizer_test.cpp")

# bench/gpu's own build over the same wheel's CPU libraries — the no-toolkit path the first GPU machine takes when it
# has no nvcc (gpu-review C3) — and first_contact.sh's stages on the CPU; then gpu_smoke --cpu on its own.
# Its PJRT leg runs the cuda program on the CPU plugin (the fixture pjrt_cpu_plugin installs it).
add_test(NAME torch2.first_contact_dry_run COMMAND "${PROJECT_SOURCE_DIR}/bench/gpu/first_contact.sh" --dry-run)
set_tests_properties(torch2.first_contact_dry_run PROPERTIES LABELS torch2 TIMEOUT 1200 FIXTURES_SETUP gpu_build
  FIXTURES_REQUIRED pjrt_plugin
  ENVIRONMENT "RESULTS=${XFER_TORCH2_BIN}/first-contact;XFER_GPU_BUILD=${XFER_TORCH2_BIN}/gpu;XFER_TORCH_SITE=${XFER_TORCH2_SITE};PYTHON=/usr/bin/python3;XFER_PJRT_CPU_PLUGIN=${CMAKE_BINARY_DIR}/pjrt-cpu/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so")
# The script's budget: with 25 s of it, every stage is skipped and says so, rather than outrun a device loan.
add_test(NAME torch2.first_contact_budget COMMAND "${PROJECT_SOURCE_DIR}/bench/gpu/first_contact.sh" --dry-run)
set_tests_properties(torch2.first_contact_budget PROPERTIES LABELS torch2 TIMEOUT 60
  PASS_REGULAR_EXPRESSION "== probe: skipped, [0-9]+ s left of the 25 s budget.*== pjrt: skipped, [0-9]+ s left of the 25 s budget"
  ENVIRONMENT "XFER_FIRST_CONTACT_BUDGET=25;RESULTS=${XFER_TORCH2_BIN}/first-contact-budget;XFER_GPU_BUILD=${XFER_TORCH2_BIN}/gpu-budget;PYTHON=/usr/bin/python3")
add_test(NAME torch2.gpu_smoke_cpu COMMAND "${XFER_TORCH2_BIN}/gpu/gpu_smoke" --cpu)
set_tests_properties(torch2.gpu_smoke_cpu PROPERTIES LABELS torch2 TIMEOUT 120 FIXTURES_REQUIRED gpu_build)
