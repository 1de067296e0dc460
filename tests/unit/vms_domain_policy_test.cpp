// What an agent defines (plugins/vms/domain_policy.h): every rule accepts what it should and
// refuses what it should, with a reason naming the element and the rule; hostile XML (entities,
// a DTD, huge or not XML at all) is refused without being expanded or fetched.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

#include "domain_policy.h"

namespace nodeha::vms {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

DomainPolicy defaults() {
  DomainPolicy p;
  p.storage_paths = {"/var/lib/libvirt/images"};
  p.firmware_paths = {"/usr/share/OVMF", "/var/lib/libvirt/qemu/nvram"};
  p.chardev_paths = {"/var/lib/libvirt/qemu", "/var/log/libvirt/qemu"};
  p.emulators = {"/usr/bin/qemu-system-x86_64"};
  return p;
}

// A domain with `devices` in <devices> and `os` in <os>.
std::string domain(const std::string& devices, const std::string& os = "",
                   const std::string& head = "<domain type='kvm'>") {
  return head +
         "<name>g</name><uuid>0a000000-0000-4000-8000-0000000000aa</uuid><memory unit='MiB'>64</memory>"
         "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type>" +
         os + "</os><devices>" + devices + "</devices></domain>";
}
std::string file_disk(const std::string& path, const std::string& type = "file", const std::string& attr = "file") {
  return "<disk type='" + type + "' device='disk'><driver name='qemu' type='raw'/><source " + attr + "='" + path +
         "'/><target dev='vda' bus='virtio'/></disk>";
}

// "ok", or the refusal's reason (a policy refusal without its "domain refused by policy: ").
std::string why(const std::string& xml, const DomainPolicy& p = defaults()) {
  auto e = check_domain(xml, p);
  if (!e) return "ok";
  const std::string prefix = "domain refused by policy: ";
  if (e->code == kPolicyRefused && e->message.rfind(prefix, 0) == 0) return e->message.substr(prefix.size());
  return e->code + ": " + e->message;
}

TEST(DomainPolicy, AcceptsACompliantDomain) {
  std::string xml =
      domain("<emulator>/usr/bin/qemu-system-x86_64</emulator>" + file_disk("/var/lib/libvirt/images/g.qcow2") +
                 file_disk("//var/lib/libvirt//images/sub/g2.raw") +
                 "<disk type='network' device='disk'><source protocol='rbd' name='pool/g'><host "
                 "name='10.0.0.1' port='6789'/></source><target dev='vdb'/></disk>"
                 "<disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>"
                 "<interface type='bridge'><source bridge='br0'/><target dev='vnet0'/>"
                 "<backend tap='/dev/net/tun' vhost='/dev/vhost-net'/></interface>"
                 "<serial type='pty'><target port='0'/></serial><console type='pty'/>"
                 "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/g.0'/>"
                 "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
                 "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
                 "<graphics type='vnc' port='-1'/><memballoon model='virtio'/>",
             "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
             "<nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/g_VARS.fd</nvram>"
             "<kernel>/var/lib/libvirt/images/vmlinuz</kernel><boot dev='hd'/>");
  EXPECT_EQ(why(xml), "ok");
  // Metadata is stored, never acted on: its names are not rules.
  EXPECT_EQ(
      why(domain("", "", "<domain type='kvm'><metadata><app:disk xmlns:app='urn:app' file='/etc/shadow'/></metadata>")),
      "ok");
}

TEST(DomainPolicy, DisksOnlyUnderTheStoragePaths) {
  EXPECT_EQ(why(domain(file_disk("/etc/shadow"))),
            "disk source /etc/shadow is outside the storage paths (storage_paths = [\"/var/lib/libvirt/images\"])");
  EXPECT_THAT(why(domain(file_disk("/var/lib/libvirt/images/../../../etc/shadow"))),
              HasSubstr("is not an absolute path without '.' or '..' components"));
  EXPECT_THAT(why(domain(file_disk("images/g.qcow2"))),
              HasSubstr("disk source images/g.qcow2 is not an absolute path"));
  EXPECT_THAT(why(domain(file_disk("/var/lib/libvirt/images-other/g"))), HasSubstr("outside the storage paths"));
  EXPECT_THAT(why(domain(file_disk("/srv", "dir", "dir"))), HasSubstr("disk source /srv is outside"));
  // A backing store and a qcow2 data file are storage too.
  EXPECT_THAT(why(domain("<disk type='file'><source file='/var/lib/libvirt/images/top.qcow2'/><backingStore "
                         "type='file'><source file='/root/base.qcow2'/></backingStore><target dev='vda'/></disk>")),
              HasSubstr("disk source /root/base.qcow2 is outside"));
  EXPECT_THAT(why(domain("<disk type='file'><source file='/var/lib/libvirt/images/a.qcow2'><dataStore type='file'>"
                         "<source file='/etc/passwd'/></dataStore></source><target dev='vda'/></disk>")),
              HasSubstr("/etc/passwd is outside"));
  EXPECT_THAT(why(domain("<filesystem type='mount'><source dir='/'/><target dir='root'/></filesystem>")),
              HasSubstr("filesystem source / is outside the storage paths"));
  EXPECT_THAT(why(domain("", "<kernel>/boot/vmlinuz</kernel>")),
              HasSubstr("kernel /boot/vmlinuz is outside the storage paths"));
  EXPECT_THAT(why(domain("", "<initrd>/etc/shadow</initrd>")), HasSubstr("initrd /etc/shadow is outside"));
  EXPECT_THAT(why(domain("", "<loader>/etc/shadow</loader>")),
              HasSubstr("loader /etc/shadow is outside the storage and firmware paths"));
  EXPECT_THAT(why(domain("<disk type='network'><source protocol='nbd' name='x'><host transport='unix' "
                         "socket='/run/docker.sock'/></source><target dev='vda'/></disk>")),
              HasSubstr("disk host /run/docker.sock is outside the storage paths"));
  EXPECT_THAT(why(domain("<disk type='scratch'><target dev='vda'/></disk>")),
              HasSubstr("disk type 'scratch' is not one"));
  // Volume disks come from the listed pools only.
  std::string volume =
      domain("<disk type='volume'><source pool='default' volume='g.qcow2'/><target dev='vda'/></disk>");
  EXPECT_EQ(why(volume), "disk source pool 'default' is not one of the storage pools (storage_pools = [])");
  DomainPolicy pools = defaults();
  pools.storage_pools = {"default"};
  EXPECT_EQ(why(volume, pools), "ok");
}

TEST(DomainPolicy, NoHostBlockDeviceUnlessAllowed) {
  EXPECT_EQ(why(domain(file_disk("/dev/vda", "block", "dev"))),
            "disk source /dev/vda is a host block device (allow_block_devices = false)");
  EXPECT_EQ(why(domain(file_disk("/dev/vda"))),
            "disk source /dev/vda is a host block device (allow_block_devices = false)");
  EXPECT_EQ(why(domain(file_disk("/var/lib/libvirt/images/lv", "block", "dev"))),
            "disk type 'block' is a host block device (allow_block_devices = false)");
  EXPECT_THAT(why(domain("<filesystem type='block'><source dev='/dev/sda1'/><target dir='t'/></filesystem>")),
              HasSubstr("host block device"));
  DomainPolicy p = defaults();
  p.allow_block_devices = true;
  EXPECT_EQ(why(domain(file_disk("/dev/vda", "block", "dev")), p), "ok");
  EXPECT_THAT(why(domain(file_disk("/dev/../etc/shadow", "block", "dev")), p), HasSubstr("not an absolute path"));
  // Block devices are not host devices: the other switch stays off.
  EXPECT_THAT(why(domain("<hostdev mode='subsystem' type='pci'/>"), p), HasSubstr("allow_host_devices = false"));
}

TEST(DomainPolicy, NoHostDevicePassthroughUnlessAllowed) {
  const std::string devices[] = {
      "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='1' slot='0' "
      "function='0'/></source></hostdev>",
      "<interface type='hostdev'><source><address type='pci' bus='2'/></source></interface>",
      "<disk type='nvme' device='disk'><source type='pci' managed='yes' namespace='1'/><target dev='vde'/></disk>",
      "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>",
      "<input type='evdev'><source dev='/dev/input/event1'/></input>",
      "<smartcard mode='host'/>",
      "<serial type='dev'><source path='/dev/ttyS0'/><target port='0'/></serial>",
      "<rng model='virtio'><backend model='random'>/dev/mem</backend></rng>",
      "<graphics type='spice'><gl enable='yes' rendernode='/dev/dri/renderD128'/></graphics>",
  };
  DomainPolicy allowed = defaults();
  allowed.allow_host_devices = true;
  for (const auto& d : devices) {
    EXPECT_THAT(why(domain(d)), HasSubstr("(allow_host_devices = false)")) << d;
    EXPECT_EQ(why(domain(d), allowed), "ok") << d;
  }
  EXPECT_EQ(why(domain(devices[0])), "hostdev passes a host device through (allow_host_devices = false)");
  EXPECT_EQ(why(domain(devices[6])), "serial source /dev/ttyS0 is a host device (allow_host_devices = false)");
}

TEST(DomainPolicy, NoDriverPassthroughNamespaceEver) {
  std::string qemu = domain("", "",
                            "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
                            "<qemu:commandline><qemu:arg value='-chardev'/></qemu:commandline>");
  EXPECT_EQ(why(qemu),
            "element <qemu:commandline> is in libvirt's driver namespace "
            "http://libvirt.org/schemas/domain/qemu/1.0, which passes options straight to the hypervisor "
            "(never allowed)");
  DomainPolicy everything = defaults();
  everything.allow_block_devices = everything.allow_host_devices = true;
  EXPECT_THAT(why(qemu, everything), HasSubstr("never allowed"));
  EXPECT_THAT(why(domain("", "",
                         "<domain type='kvm' xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'><q:capabilities>"
                         "<q:add capability='x'/></q:capabilities>")),
              HasSubstr("<q:capabilities>"));
  // The namespace as the default one, on the root, or hidden in metadata: still refused.
  EXPECT_THAT(
      why(domain("", "", "<domain type='kvm'><commandline xmlns='http://libvirt.org/schemas/domain/qemu/1.0'/>")),
      HasSubstr("<commandline> is in libvirt's driver namespace"));
  EXPECT_THAT(why(domain("", "", "<domain xmlns='http://libvirt.org/schemas/domain/qemu/1.0'>")),
              HasSubstr("<domain>"));
  EXPECT_THAT(why(domain("", "",
                         "<domain type='kvm'><metadata><l:namespace "
                         "xmlns:l='http://libvirt.org/schemas/domain/lxc/1.0'/></metadata>")),
              HasSubstr("never allowed"));
}

TEST(DomainPolicy, NoHostProgramAndOnlyAllowedEmulators) {
  EXPECT_EQ(why(domain("<interface type='ethernet'><script path='/tmp/x.sh'/></interface>")),
            "interface script /tmp/x.sh runs a host program (never allowed)");
  EXPECT_THAT(why(domain("<interface type='ethernet'><downscript path='/etc/qemu-ifdown'/></interface>")),
              HasSubstr("runs a host program"));
  EXPECT_THAT(why(domain("<filesystem type='mount'><driver type='virtiofs'/><binary path='/bin/sh'/><source "
                         "dir='/var/lib/libvirt/images/share'/><target dir='tag'/></filesystem>")),
              HasSubstr("filesystem binary /bin/sh runs a host program"));
  EXPECT_THAT(why(domain("<emulator>/bin/sh</emulator>")),
              HasSubstr("emulator /bin/sh is not an allowed emulator (emulators = [\"/usr/bin/qemu-system-x86_64\"]"));
  EXPECT_THAT(why(domain("", "", "<domain type='xen'><bootloader>/bin/sh</bootloader>")),
              HasSubstr("bootloader runs a host program"));
}

TEST(DomainPolicy, HostFilesAndSocketsOnlyUnderTheChardevPaths) {
  EXPECT_EQ(why(domain("<serial type='file'><source path='/etc/cron.d/x'/><target port='0'/></serial>")),
            "serial source /etc/cron.d/x is outside the paths for host files and sockets (chardev_paths = "
            "[\"/var/lib/libvirt/qemu\", \"/var/log/libvirt/qemu\"])");
  EXPECT_THAT(why(domain("<channel type='unix'><source mode='connect' path='/run/docker.sock'/><target "
                         "type='virtio' name='x'/></channel>")),
              HasSubstr("channel source /run/docker.sock is outside"));
  EXPECT_THAT(why(domain("<console type='pty'><log file='/root/.ssh/authorized_keys' append='on'/></console>")),
              HasSubstr("console log /root/.ssh/authorized_keys is outside"));
  EXPECT_THAT(why(domain("<graphics type='vnc' socket='/etc/vnc.sock'/>")),
              HasSubstr("graphics /etc/vnc.sock is outside"));
  DomainPolicy user_network = defaults();
  user_network.allow_host_network = true;
  EXPECT_THAT(why(domain("<interface type='user'><backend type='passt' logFile='/etc/profile.d/x.sh'/></interface>"),
                  user_network),
              HasSubstr("interface backend /etc/profile.d/x.sh is outside"));
  EXPECT_EQ(why(domain("", "", "<domain type='kvm' file='/etc/shadow'>")),
            "domain /etc/shadow is outside the paths for host files and sockets (chardev_paths = "
            "[\"/var/lib/libvirt/qemu\", \"/var/log/libvirt/qemu\"])");
  EXPECT_EQ(why(domain("<serial type='file'><source path='/var/log/libvirt/qemu/g-serial.log'/></serial>")), "ok");
}

TEST(DomainPolicy, HostileXmlIsRefusedWithoutExpansionOrFetch) {
  std::string laughs = "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY a 'lol'>";
  for (int i = 1; i < 10; ++i) {
    std::string prev = "&" + std::string(1, char('a' + i - 1)) + ";";
    std::string ten;
    for (int j = 0; j < 10; ++j) ten += prev;
    laughs += "<!ENTITY " + std::string(1, char('a' + i)) + " '" + ten + "'>";
  }
  laughs += "]><domain><name>&j;</name></domain>";
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(why(laughs), "bad_value: the domain XML has a <!DOCTYPE> (DTDs and entity declarations are not accepted)");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));

  EXPECT_THAT(why("<?xml version='1.0'?><!DOCTYPE d [<!ENTITY x SYSTEM "
                  "'file:///etc/passwd'>]><domain><name>&x;</name></domain>"),
              HasSubstr("has a <!DOCTYPE>"));
  EXPECT_THAT(why("<!DOCTYPE domain SYSTEM 'http://127.0.0.1:1/x.dtd'><domain/>"), HasSubstr("has a <!DOCTYPE>"));
  // The same DOCTYPE in another encoding: the parser, not a text search, stops it.
  EXPECT_THAT(why("<?xml version='1.0' encoding='UTF-7'?>+ADw-!DOCTYPE d +AFs-+ADw-!ENTITY x SYSTEM "
                  "'file:///etc/passwd'+AD4-+AF0-+AD4-+ADw-domain+AD4-+ADw-name+AD4-+ACY-x+ADs-+ADw-/name+AD4-+ADw-/"
                  "domain+AD4-"),
              HasSubstr("has a <!DOCTYPE>"));
  EXPECT_THAT(why("<domain><name>&undeclared;</name></domain>"), HasSubstr("is not well-formed XML"));
  EXPECT_THAT(why("not xml at all"), StartsWith("bad_value: the domain XML is not well-formed XML (line 1: "));
  EXPECT_THAT(why(""), StartsWith("bad_value: the domain XML"));
  EXPECT_THAT(why(std::string("<domain>\0</domain>", 18)), HasSubstr("NUL byte"));
  EXPECT_EQ(why("<node/>"), "bad_value: the domain XML's root element is <node>, not <domain>");
  std::string huge = domain("<description>" + std::string(1 << 20, 'x') + "</description>");
  EXPECT_THAT(why(huge), HasSubstr("larger than 1 MiB"));
  std::string deep;
  for (int i = 0; i < 10000; ++i) deep += "<a>";
  EXPECT_THAT(why("<domain>" + deep + "</domain>"), StartsWith("bad_value: the domain XML"));
}

TEST(DomainPolicy, EmulatorsFromLibvirtCapabilities) {
  std::string caps =
      "<capabilities><host/><guest><os_type>hvm</os_type><arch name='x86_64'><emulator>"
      "/usr/bin/qemu-system-x86_64</emulator><domain type='qemu'/><domain type='kvm'><emulator>"
      "/usr/bin/qemu-kvm</emulator></domain></arch></guest><guest><arch name='i686'><emulator>"
      "/usr/bin/qemu-system-x86_64</emulator></arch></guest></capabilities>";
  EXPECT_THAT(capability_emulators(caps), ElementsAre("/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-kvm"));
  EXPECT_TRUE(capability_emulators("<!DOCTYPE x><x/>").empty());
}

TEST(DomainPolicy, ConfigPathsAreAbsoluteAndNormal) {
  nlohmann::json c = {{"storage_paths", {"/var/lib/libvirt/images/"}},
                      {"storage_pools", nlohmann::json::array()},
                      {"firmware_paths", nlohmann::json::array()},
                      {"chardev_paths", nlohmann::json::array()},
                      {"emulators", nlohmann::json::array()},
                      {"allow_block_devices", false},
                      {"allow_host_devices", true},
                      {"allow_unconfined", false},
                      {"allow_host_network", false}};
  DomainPolicy p = read_domain_policy(c);
  EXPECT_THAT(p.storage_paths, ElementsAre("/var/lib/libvirt/images"));
  EXPECT_TRUE(p.allow_host_devices);
  c["storage_paths"] = {"images"};
  EXPECT_THROW(read_domain_policy(c), ConfigError);
  c["storage_paths"] = {"/srv/../etc"};
  EXPECT_THROW(read_domain_policy(c), ConfigError);
}

TEST(DomainPolicy, QemusConfinementStaysUnlessAllowed) {
  EXPECT_EQ(why(domain("", "", "<domain type='kvm'><seclabel type='dynamic' model='dac' relabel='yes'/>")), "ok");
  for (const std::string head : {"<domain type='kvm'><seclabel type='none'/>",
                                 "<domain type='kvm'><seclabel type='static' model='dac'><label>0:0</label></seclabel>",
                                 "<domain type='kvm'><seclabel type='dynamic' model='selinux'><baselabel>unconfined_t"
                                 "</baselabel></seclabel>"})
    EXPECT_THAT(why(domain("", "", head)), HasSubstr("(allow_unconfined = false)")) << head;
  std::string unlabelled = "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/a.img'>"
                           "<seclabel model='dac' relabel='no'/></source><target dev='vda'/></disk>";
  EXPECT_EQ(why(domain(unlabelled)), "disk seclabel relabel 'no' weakens QEMU's confinement (allow_unconfined = false)");
  DomainPolicy allowed = defaults();
  allowed.allow_unconfined = true;
  EXPECT_EQ(why(domain(unlabelled), allowed), "ok");
  EXPECT_EQ(why(domain("", "", "<domain type='kvm'><seclabel type='none'/>"), allowed), "ok");
}

// A guest that reaches the host's own services (libvirtd's TCP port, NATS) through its serial port
// or user-mode networking can ask them for what the policy refuses.
TEST(DomainPolicy, NoWayToTheHostsOwnServicesUnlessAllowed) {
  auto serial = [](const std::string& type, const std::string& source) {
    return "<serial type='" + type + "'>" + source + "<target port='0'/></serial>";
  };
  for (const std::string host : {"127.0.0.1", "127.1.2.3", "0.0.0.0", "169.254.0.1", "::1", "::", "fe80::1",
                                 "::ffff:127.0.0.1", "localhost", "node-a.example"}) {
    std::string tcp = serial("tcp", "<source mode='connect' host='" + host + "' service='16509'/>");
    EXPECT_THAT(why(domain(tcp)), HasSubstr("(allow_host_network = false)")) << host;
  }
  EXPECT_EQ(why(domain(serial("tcp", "<source mode='connect' host='127.0.0.1' service='16509'/>"))),
            "serial source tcp to '127.0.0.1' is the host itself (loopback, unspecified or link-local) "
            "(allow_host_network = false)");
  EXPECT_THAT(why(domain(serial("udp", "<source mode='bind' host='0.0.0.0' service='1'/>"
                                       "<source host='localhost' service='2'/>"))),
              HasSubstr("udp to 'localhost' is a name"));
  EXPECT_THAT(why(domain("<redirdev bus='usb' type='tcp'><source mode='connect' host='127.0.0.1' service='4000'/>"
                         "</redirdev>")),
              HasSubstr("redirdev source tcp to '127.0.0.1'"));
  EXPECT_THAT(why(domain("<interface type='user'/>")), HasSubstr("interface type 'user'"));
  EXPECT_EQ(why(domain(serial("tcp", "<source mode='connect' host='10.0.0.9' service='7000'/>"))), "ok");
  EXPECT_EQ(why(domain(serial("tcp", "<source mode='bind' host='0.0.0.0' service='7000'/>"))), "ok");  // it listens
  EXPECT_EQ(why(domain(serial("tcp", "<source mode='connect' host='2001:db8::5' service='7000'/>"))), "ok");
  DomainPolicy allowed = defaults();
  allowed.allow_host_network = true;
  EXPECT_EQ(why(domain(serial("tcp", "<source mode='connect' host='127.0.0.1' service='16509'/>")), allowed), "ok");
  EXPECT_EQ(why(domain("<interface type='user'/>"), allowed), "ok");
}

TEST(DomainPolicy, OnlyImageFormatsThatNameNoUncheckedFile) {
  auto disk = [](const std::string& type, const std::string& format, const std::string& source) {
    return "<disk type='" + type + "' device='disk'><driver name='qemu' type='" + format + "'/>" + source +
           "<target dev='vda'/></disk>";
  };
  const std::string file = "<source file='/var/lib/libvirt/images/a.img'/>";
  EXPECT_EQ(why(domain(disk("file", "qcow2", file))), "ok");
  EXPECT_EQ(why(domain(disk("file", "vmdk", file))),
            "disk driver format 'vmdk' can name other host files; only [\"raw\", \"qcow2\"] are allowed");
  EXPECT_THAT(why(domain(disk("file", "raw", "<source file='/var/lib/libvirt/images/a.img'/><backingStore type='file'>"
                                            "<format type='qed'/><source file='/var/lib/libvirt/images/b'/></backingStore>"))),
              HasSubstr("format 'qed' can name other host files"));
  EXPECT_THAT(why(domain(disk("network", "qcow2", "<source protocol='rbd' name='pool/a'/>"))),
              HasSubstr("disk type 'network' in format 'qcow2'"));
  EXPECT_EQ(why(domain(disk("network", "raw", "<source protocol='rbd' name='pool/a'/>"))), "ok");
}

}  // namespace
}  // namespace nodeha::vms
