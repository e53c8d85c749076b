// GoogleTest main for every flurry test binary. Returns 77 (CTest's SKIP_RETURN_CODE) when every
// test skipped and none failed, so a GPU test binary on a machine without a GPU shows as skipped
// in CTest, while a binary with any failure still fails.
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const ::testing::UnitTest& u = *::testing::UnitTest::GetInstance();
  if (rc == 0 && u.successful_test_count() == 0 && u.skipped_test_count() > 0) return 77;
  return rc;
}
