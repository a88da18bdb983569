# daebus_add_blueprint(NAME SOURCES...)
# Builds a blueprint as an OBJECT library: its objects go straight into every
# target that links it, so the linker cannot drop the handlers the way it drops
# unreferenced members of a static archive.
function(daebus_add_blueprint name)
  add_library(${name} OBJECT ${ARGN})
  if(TARGET daebus::daebus)
    target_link_libraries(${name} PUBLIC daebus::daebus)
  endif()
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
