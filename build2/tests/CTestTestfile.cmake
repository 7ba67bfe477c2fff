# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build2/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
include("/work/main/build2/tests/vocabulary_test[1]_include.cmake")
include("/work/main/build2/tests/spec_test[1]_include.cmake")
include("/work/main/build2/tests/grid_test[1]_include.cmake")
include("/work/main/build2/tests/plan_cli_test[1]_include.cmake")
include("/work/main/build2/tests/metrics_test[1]_include.cmake")
include("/work/main/build2/tests/data_test[1]_include.cmake")
include("/work/main/build2/tests/train_test[1]_include.cmake")
include("/work/main/build2/tests/sweep_test[1]_include.cmake")
include("/work/main/build2/tests/analysis_test[1]_include.cmake")
include("/work/main/build2/tests/submit_test[1]_include.cmake")
include("/work/main/build2/tests/train_parts_test[1]_include.cmake")
include("/work/main/build2/tests/train_engine_test[1]_include.cmake")
include("/work/main/build2/tests/ledger_test[1]_include.cmake")
include("/work/main/build2/tests/cost_test[1]_include.cmake")
include("/work/main/build2/tests/resolved_trial_test[1]_include.cmake")
include("/work/main/build2/tests/store_test[1]_include.cmake")
add_test([=[export_test_backbones]=] "/usr/bin/python3" "/work/main/tools/export_backbones.py" "resnet18" "shufflenet_v2_x0_5" "mobilenet_v3_small" "mnasnet0_5" "squeezenet1_1" "--random-init" "--out" "/work/main/build2/test-models")
set_tests_properties([=[export_test_backbones]=] PROPERTIES  FIXTURES_SETUP "backbones" TIMEOUT "300" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;39;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[slurm_jobscripts]=] "/work/main/tests/slurm/run.sh" "/work/main/build2" "/work/main")
set_tests_properties([=[slurm_jobscripts]=] PROPERTIES  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" FIXTURES_REQUIRED "backbones" RESOURCE_LOCK "cpu_heavy" TIMEOUT "900" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;71;add_test;/work/main/tests/CMakeLists.txt;0;")
subdirs("zoo")
