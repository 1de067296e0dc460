# The Debian packages (packaging/README.md): `cpack` in the build tree makes nodeha_*.deb (host,
# CLI, plugins, configs, units) and nodeha-dev_*.deb (the SDK). Included last by the top-level
# CMakeLists, after every install() rule.
#
# Components: `runtime` (the default of every install() rule without one), `dev` (the SDK) and
# `system`, the files with an absolute place (/etc, /lib/systemd). `system` is left out of a
# plain `cmake --install --prefix DIR`, which must not write to the machine's /etc.
install(FILES config/agent.toml config/controller.toml DESTINATION /etc/nodeha
        COMPONENT system EXCLUDE_FROM_ALL)
install(FILES config/systemd/nodeha-agent.service config/systemd/nodeha-controller.service
        DESTINATION /lib/systemd/system COMPONENT system EXCLUDE_FROM_ALL)
install(FILES docs/operations.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME nodeha)
set(CPACK_PACKAGE_VENDOR nodeha)
set(CPACK_PACKAGE_CONTACT "nodeha maintainers <nodeha@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime system dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Maintainer scripts must be 0755 whatever the checkout's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Package `nodeha`: what an agent or a controller machine needs. Its Depends come from the
# shared libraries the binaries and plugins link (dpkg-shlibdeps).
set(CPACK_DEBIAN_HOST_PACKAGE_NAME nodeha)
set(CPACK_DEBIAN_HOST_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_HOST_DESCRIPTION "node high availability for KVM clouds
 nodeha-host (agent and controller roles), its plugins, the nodeha CLI, the
 systemd units nodeha-agent and nodeha-controller, and Prometheus alert rules.")
set(CPACK_DEBIAN_HOST_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_HOST_PACKAGE_SUGGESTS "nats-server, libvirt-daemon-system, prometheus, prometheus-alertmanager, ipmitool")
set(CPACK_DEBIAN_HOST_PACKAGE_CONTROL_EXTRA
    "${CMAKE_CURRENT_LIST_DIR}/deb/conffiles;${CMAKE_CURRENT_LIST_DIR}/deb/postinst;${CMAKE_CURRENT_LIST_DIR}/deb/prerm")
# Package `nodeha-dev`: header-only, so its one dependency is the JSON library the headers use.
set(CPACK_DEBIAN_DEV_PACKAGE_NAME nodeha-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_DESCRIPTION "nodeha plugin SDK
 Headers and the CMake package (find_package(nodeha), nodeha_add_plugin) to
 build nodeha plugins.")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "nlohmann-json3-dev (>= 3.9)")

include(CPack)
cpack_add_component_group(host)
cpack_add_component_group(dev)
cpack_add_component(runtime GROUP host)
cpack_add_component(system GROUP host)
cpack_add_component(dev GROUP dev)
