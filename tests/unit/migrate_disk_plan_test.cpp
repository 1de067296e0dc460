// Which local disks a live migration copies (plugins/migrate/disk_plan.h), from the live XML
// libvirt writes: a raw file, a qcow2 top over a backing file on shared storage; and the disks
// that cannot be copied, each refused with what to do.
#include "disk_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::migrate {
namespace {

using ::testing::HasSubstr;

std::string domain(const std::string& disks) { return "<domain><devices>" + disks + "</devices></domain>"; }

const std::string kRaw =
    "<disk type='file' device='disk'><driver name='qemu' type='raw' cache='writethrough'/>"
    "<source file='/var/lib/libvirt/images/a.raw' index='1'/><backingStore/><target dev='vda' bus='virtio'/></disk>";
const std::string kQcow2OverShared =
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/top.qcow2' index='2'/>"
    "<backingStore type='file' index='1'><format type='raw'/><source file='/srv/shared/base.raw'/><backingStore/></backingStore>"
    "<target dev='vdb' bus='virtio'/></disk>";
const std::string kSharedDisk =
    "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/srv/shared/c.raw'/><target dev='vdc'/></disk>";
const std::string kIso =
    "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/var/lib/iso/x.iso'/><target dev='hdc'/><readonly/></disk>";

TEST(DiskPlan, TheLiveXmlGivesFormatAndBackingFile) {
  auto disks = vm_ops::parse_disks(domain(kRaw + kQcow2OverShared));
  ASSERT_EQ(disks.size(), 2u);
  EXPECT_EQ(disks[0].format, "raw");
  EXPECT_EQ(disks[0].backing, "") << "<backingStore/> is none";
  EXPECT_EQ(disks[1].source, "/var/lib/libvirt/images/top.qcow2") << "the top's source, not the backing file's";
  EXPECT_EQ(disks[1].format, "qcow2");
  EXPECT_EQ(disks[1].backing, "/srv/shared/base.raw");
  EXPECT_EQ(disks[1].backing_format, "raw");
  EXPECT_EQ(disks[1].target, "vdb");
}

TEST(DiskPlan, OnlyTheWritableLocalDisksAreCopied) {
  auto plan = plan_copies(vm_ops::parse_disks(domain(kRaw + kQcow2OverShared + kSharedDisk + kIso)), {"/srv/shared"});
  ASSERT_TRUE(plan) << plan.status().message();
  ASSERT_EQ(plan.value().size(), 2u);
  EXPECT_EQ(plan.value()[0].target, "vda");
  EXPECT_EQ(plan.value()[0].path, "/var/lib/libvirt/images/a.raw");
  EXPECT_EQ(plan.value()[1].target, "vdb");
  EXPECT_EQ(plan.value()[1].backing, "/srv/shared/base.raw");
  EXPECT_EQ(describe(plan.value()), "vda /var/lib/libvirt/images/a.raw, vdb /var/lib/libvirt/images/top.qcow2");
  auto none = plan_copies(vm_ops::parse_disks(domain(kSharedDisk)), {"/srv/shared"});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none.value().empty());
}

TEST(DiskPlan, ABackingFileOnThisNodeIsRefused) {
  // Only the top image moves: the destination could not open a backing file left here.
  auto plan = plan_copies(vm_ops::parse_disks(domain(kQcow2OverShared)), {});
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.status().code(), NODEHA_ERR_INVALID);
  EXPECT_THAT(plan.status().message(), HasSubstr("backing file /srv/shared/base.raw is on this node"));
  EXPECT_THAT(plan.status().message(), HasSubstr("shared_paths"));
}

TEST(DiskPlan, DisksThatCannotBeCopiedAreRefusedWithTheirReason) {
  auto block = plan_copies(vm_ops::parse_disks(domain(
                               "<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg/x'/>"
                               "<target dev='vda'/></disk>")),
                           {});
  ASSERT_FALSE(block);
  EXPECT_THAT(block.status().message(), HasSubstr("disk vda (/dev/vg/x) cannot be copied: it is a local block disk"));
  auto vmdk = plan_copies(vm_ops::parse_disks(domain(
                              "<disk type='file' device='disk'><driver name='qemu' type='vmdk'/><source file='/var/x.vmdk'/>"
                              "<target dev='vda'/></disk>")),
                          {});
  ASSERT_FALSE(vmdk);
  EXPECT_THAT(vmdk.status().message(), HasSubstr("its format is vmdk"));
  auto no_format = plan_copies(vm_ops::parse_disks(domain(
                                   "<disk type='file' device='disk'><source file='/var/x.img'/><target dev='vda'/></disk>")),
                               {});
  ASSERT_FALSE(no_format);
  EXPECT_THAT(no_format.status().message(), HasSubstr("not given"));
}

TEST(DiskPlan, PathsAreEscapedForLibvirtsXml) {
  EXPECT_EQ(vm_ops::escape("/a/it's <b> & \"c\""), "/a/it&apos;s &lt;b&gt; &amp; &quot;c&quot;");
}

}  // namespace
}  // namespace nodeha::migrate
