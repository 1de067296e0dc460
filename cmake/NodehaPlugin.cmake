# nodeha_add_plugin(NAME source...)
# Builds a nodeha plugin: a MODULE library named nodeha_<NAME>.so, hidden visibility, linked to
# the SDK. Name it in a config as `library = "<NAME>"` (searched in plugin_path) or by path.
function(nodeha_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE nodeha::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME "nodeha_${name}"
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(DEFINED NODEHA_PLUGIN_BUILD_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${NODEHA_PLUGIN_BUILD_DIR}")
  endif()
  if(DEFINED NODEHA_PLUGIN_INSTALL_DIR AND NOT NODEHA_PLUGIN_NO_INSTALL)
    install(TARGETS ${name} LIBRARY DESTINATION "${NODEHA_PLUGIN_INSTALL_DIR}")
  endif()
endfunction()
