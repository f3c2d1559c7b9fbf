# tokenizer.json tokenizers through GGUF (gguf_tokenizer_test.cpp): needs the real Llama 3 and
# Qwen3 files of the hf_oracle fixture above.
add_executable(gguf_tokenizer_tests gguf_tokenizer_test.cpp)
target_link_libraries(gguf_tokenizer_tests PRIVATE slmc_gguf slmc_tokenizer GTest::gtest GTest::gtest_main)
target_include_directories(gguf_tokenizer_tests PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_definitions(gguf_tokenizer_tests PRIVATE SLMC_HF_ORACLE_DIR="${_slmc_hf_oracle}"
  SLMC_SHARED_DATA="${SLMC_SHARED_DATA}" SLMC_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  $<$<BOOL:${SLMC_SANITIZE}>:SLMC_HF_ORACLE_QUICK>)
gtest_discover_tests(gguf_tokenizer_tests TEST_PREFIX "gguf_tokenizer_tests." DISCOVERY_TIMEOUT 60
                     PROPERTIES FIXTURES_REQUIRED hf_oracle TIMEOUT 600)
