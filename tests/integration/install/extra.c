/* An action in the default blueprint, in a file nothing else references:
 * kept when linked as an OBJECT library (daebus_add_blueprint), dropped by the
 * linker from a static archive (docs/blueprints.md, "Linking"). */
#include <daebus/daebus.h>

ACTION(extra_action, "extra_action")
{
    return daebus_bus_reply(req, payload);
}
