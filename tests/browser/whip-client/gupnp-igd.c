/*
 * A stand-in for libgupnp-igd-1.0.so.4, so that Debian 12's
 * simple-whip-client can run at all.
 *
 * The client links libsoup 2; libnice links gupnp-igd, which pulls in
 * gupnp 1.6 and with it libsoup 3, and libsoup 3 aborts a process that
 * holds libsoup 2 ("libsoup2 symbols detected") before the client sends
 * anything. gupnp-igd only asks a home router to forward ports (UPnP),
 * which a test on loopback never needs: this library has the four
 * functions libnice calls, and does nothing. The tests build it and put
 * its directory first in the client's LD_LIBRARY_PATH.
 */
#include <glib-object.h>

typedef struct {
  GObject parent;
} GUPnPSimpleIgd;

typedef struct {
  GObjectClass parent;
} GUPnPSimpleIgdClass;

G_DEFINE_TYPE(GUPnPSimpleIgd, gupnp_simple_igd, G_TYPE_OBJECT)

static void gupnp_simple_igd_class_init(GUPnPSimpleIgdClass *klass) {
  /* libnice connects to both; neither is ever emitted. */
  g_signal_new("mapped-external-port", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL,
               NULL, NULL, G_TYPE_NONE, 0);
  g_signal_new("error-mapping-port", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL,
               NULL, NULL, G_TYPE_NONE, 0);
}

static void gupnp_simple_igd_init(GUPnPSimpleIgd *self) { (void)self; }

GUPnPSimpleIgd *gupnp_simple_igd_thread_new(void) {
  return g_object_new(gupnp_simple_igd_get_type(), NULL);
}

void gupnp_simple_igd_add_port(GUPnPSimpleIgd *self, const gchar *protocol, guint external_port,
                               const gchar *local_ip, guint local_port, guint32 lease_duration,
                               const gchar *description) {
  (void)self, (void)protocol, (void)external_port, (void)local_ip, (void)local_port,
      (void)lease_duration, (void)description;
}

void gupnp_simple_igd_remove_port_local(GUPnPSimpleIgd *self, const gchar *protocol,
                                        const gchar *local_ip, guint16 local_port) {
  (void)self, (void)protocol, (void)local_ip, (void)local_port;
}
