#include "compress/core/sha256.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "tests/test_util.h"

namespace slmc {
namespace {

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, ChunkedUpdatesAndFilesAgreeWithPythonHashlib) {
  std::string data;
  for (uint32_t i = 0; i < 300000; ++i) data += static_cast<char>((i * 7919u) >> 3);
  Sha256 h;
  for (size_t off = 0, step = 1; off < data.size(); off += step, step = step * 3 % 1021 + 1)
    h.update(data.data() + off, std::min(step, data.size() - off));
  const std::string chunked = h.hex();
  EXPECT_EQ(chunked, sha256_hex(data));
  slmc::testing::TempDir dir;
  slmc::testing::write_bytes(dir.file("d.bin"), data);
  EXPECT_EQ(sha256_file(dir.file("d.bin")), chunked);
  const std::string cmd = "/usr/bin/python3 -c \"import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb')"
                          ".read()).hexdigest())\" " + dir.file("d.bin");
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[128] = {};
  ASSERT_NE(fgets(buf, sizeof buf, p), nullptr);
  pclose(p);
  EXPECT_EQ(std::string(buf, 64), chunked);
  EXPECT_THROW((void)sha256_file(dir.file("missing")), Error);
}

}  // namespace
}  // namespace slmc
