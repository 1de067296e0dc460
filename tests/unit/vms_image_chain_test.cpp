// The files a qcow2 image names in its own header (plugins/vms/image_chain.h), on images made by
// the real qemu-img: a chain inside the storage path is fine; a backing file or data file outside
// it, directly, through '..' or deeper in the chain, is refused; and so is a raw file a guest
// filled with a qcow2 header, once a domain declares it qcow2 (admit_domain reads the chain).
#include "domain_policy.h"
#include "image_chain.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace nodeha::vms {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ImageChain : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nodeha-image-chain-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    storage_ = root_ + "/images";
    fs::create_directories(storage_);
    std::ofstream(root_ + "/outside.raw") << std::string(4096, 'x');
  }
  void TearDown() override { fs::remove_all(root_); }

  // qemu-img create -f qcow2 `args` `image` (relative to the storage dir); the test fails if it fails.
  std::string qcow2(const std::string& image, const std::string& args) {
    std::string path = storage_ + "/" + image;
    std::string cmd = "cd " + storage_ + " && qemu-img create -q -f qcow2 " + args + " " + path + " 1M 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return path;
  }
  std::string why(const std::string& path, const std::string& format = "qcow2") {
    auto r = check_image_chain({path, format}, {storage_});
    return r ? *r : "ok";
  }

  std::string root_, storage_;
};

TEST_F(ImageChain, AChainInsideTheStoragePathIsFine) {
  std::ofstream(storage_ + "/base.raw") << std::string(1 << 20, '\0');
  qcow2("mid.qcow2", "-b base.raw -F raw");
  auto top = qcow2("top.qcow2", "-b " + storage_ + "/mid.qcow2 -F qcow2");
  EXPECT_EQ(why(top), "ok");
  EXPECT_EQ(why(storage_ + "/not-there.qcow2"), "ok");  // libvirt refuses to start it
}

TEST_F(ImageChain, ABackingOrDataFileOutsideIsRefusedAtAnyDepth) {
  auto evil = qcow2("evil.qcow2", "-b " + root_ + "/outside.raw -F raw");
  EXPECT_EQ(why(evil), "image " + evil + " names backing file " + root_ + "/outside.raw, outside the storage paths");
  auto climbing = qcow2("climbing.qcow2", "-b ../outside.raw -F raw");
  EXPECT_THAT(why(climbing), HasSubstr("a path with '.' or '..' components"));
  auto deeper = qcow2("deeper.qcow2", "-b evil.qcow2 -F qcow2");
  EXPECT_THAT(why(deeper), HasSubstr("evil.qcow2 names backing file " + root_ + "/outside.raw"));
  auto data = qcow2("data.qcow2", "-o data_file=" + root_ + "/data.raw");
  EXPECT_EQ(why(data), "image " + data + " names data file " + root_ + "/data.raw, outside the storage paths");
}

TEST_F(ImageChain, AGuestWrittenRawDiskDeclaredQcow2IsRefused) {
  auto evil = qcow2("evil.qcow2", "-b " + root_ + "/outside.raw -F raw");
  fs::copy_file(evil, storage_ + "/guest.raw");  // what a guest can write into its own raw disk
  auto disk = [&](const std::string& format) {
    return "<domain type='kvm'><name>g</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>"
           "<disk type='file' device='disk'><driver name='qemu' type='" + format + "'/><source file='" + storage_ +
           "/guest.raw'/><target dev='vda'/></disk></devices></domain>";
  };
  DomainPolicy policy;
  policy.storage_paths = {storage_};
  policy.emulators = {"/usr/bin/qemu-system-x86_64"};  // admit_domain asks libvirt only without them
  EXPECT_FALSE(admit_domain(nullptr, disk("raw"), policy));
  auto refused = admit_domain(nullptr, disk("qcow2"), policy);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->code, kPolicyRefused);
  EXPECT_THAT(refused->message, HasSubstr("guest.raw names backing file " + root_ + "/outside.raw, outside the storage paths"));
  std::ofstream(storage_ + "/plain.raw") << "not a qcow2 header";
  EXPECT_THAT(why(storage_ + "/plain.raw"), HasSubstr("is declared qcow2 but has no qcow2 header"));
}

}  // namespace
}  // namespace nodeha::vms
