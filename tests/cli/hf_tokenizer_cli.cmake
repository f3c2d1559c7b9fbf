# slmc with a real tokenizer.json (tests/cli/hf_tokenizer_cli_test.cpp): needs the Llama 3
# tokenizer the hf_oracle fixture of tests/tokenizer fetches, which slmc_add_test cannot attach.
add_executable(cli_hf_tokenizer_tests hf_tokenizer_cli_test.cpp)
target_link_libraries(cli_hf_tokenizer_tests PRIVATE slmc_io slmc_model ${HDF5_LIBRARIES}
                      GTest::gtest GTest::gtest_main)
target_include_directories(cli_hf_tokenizer_tests PRIVATE ${HDF5_INCLUDE_DIRS} ${PROJECT_SOURCE_DIR})
target_compile_definitions(cli_hf_tokenizer_tests PRIVATE SLMC_EXE="$<TARGET_FILE:slmc>"
  SLMC_SHARED_DATA="${SLMC_SHARED_DATA}" SLMC_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  SLMC_BINARY_DIR="${PROJECT_BINARY_DIR}"
  SLMC_HF_ORACLE_DIR="${PROJECT_BINARY_DIR}/tests/tokenizer/hf_oracle")
add_dependencies(cli_hf_tokenizer_tests slmc)
gtest_discover_tests(cli_hf_tokenizer_tests DISCOVERY_TIMEOUT 60 TEST_PREFIX "cli_hf_tokenizer_tests."
  PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" FIXTURES_REQUIRED hf_oracle)
