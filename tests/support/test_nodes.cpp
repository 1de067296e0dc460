#include "test_nodes.h"

#include "host_process.h"

#include <cstdio>
#include <fstream>

namespace nodeha::test {

std::string uuid_for(int node, int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08d-0000-4000-8000-%012d", node, i);
  return buf;
}

std::vector<Vm> vms_of(int node, int count, int local) {
  std::vector<Vm> out;
  for (int i = 0; i < count; ++i)
    out.push_back({"vm-" + std::to_string(node) + "-" + std::to_string(i), uuid_for(node, i), i < local, {}});
  return out;
}

std::string node_xml(const std::vector<Vm>& vms, int memory_mib) {
  std::string x = "<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
                  "<cores>8</cores><threads>1</threads><active>8</active></cpu><memory>" +
                  std::to_string(memory_mib * 1024) + "</memory>\n";
  for (const auto& v : vms) {
    x += "<domain type='test'><name>" + v.name + "</name><uuid>" + v.uuid + "</uuid><memory unit='MiB'>64</memory>"
         "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>";
    if (v.local_disk)
      x += "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/" + v.name +
           ".qcow2'/><target dev='vda' bus='virtio'/></disk>";
    else
      x += "<disk type='network' device='disk'><source protocol='rbd' name='pool/" + v.name +
           "'><host name='10.0.0.1' port='6789'/></source><target dev='vda' bus='virtio'/></disk>";
    x += v.devices + "</devices></domain>\n";
  }
  return x + "</node>\n";
}

std::string NodeFiles::path(const std::string& node, const std::vector<Vm>& vms, int memory_mib) {
  std::string file = dir_.file(node + ".xml");
  if (written_.insert(node).second) std::ofstream(file) << node_xml(vms, memory_mib);
  return file;
}

std::string test_agent_config(const std::string& node, const std::string& node_file,
                              const std::vector<std::string>& nats_urls) {
  return host_tables("agent", node, nats_urls) + "[libvirt]\nuri = \"test://" + node_file + "\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n"
         "[[plugin]]\nlibrary = \"vms\"\nsync_every = \"300ms\"\nstop_timeout = \"0s\"\n";
}

}  // namespace nodeha::test
