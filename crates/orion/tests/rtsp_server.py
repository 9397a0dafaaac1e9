#!/usr/bin/python3
"""A test RTSP camera built from gst-rtsp-server (Debian's python3-gi bindings).

    rtsp_server.py PORT IMAGE [--codec h264|h265] [--stall-after S] [--user U --password P]

Serves rtsp://127.0.0.1:PORT/cam: IMAGE (a still picture with a person in it)
encoded live at 10 fps. With --stall-after S, every client's stream stops sending
frames after S seconds while the connection stays open (a frozen camera). With
--user/--password, clients must authenticate (basic auth). Prints "ready" on
stdout once it listens; runs until killed.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("port")
p.add_argument("image")
p.add_argument("--codec", choices=["h264", "h265"], default="h264")
p.add_argument("--stall-after", type=float, default=0.0)
p.add_argument("--user")
p.add_argument("--password")
args = p.parse_args()

Gst.init(None)
if args.codec == "h264":
    enc = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96"
else:
    enc = "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph265pay name=pay0 pt=96"
launch = (
    f"( filesrc location={args.image} ! decodebin ! imagefreeze is-live=true ! videoconvert ! videoscale "
    f"! video/x-raw,format=I420,width=640,height=480,framerate=10/1 ! valve name=gate drop=false ! {enc} )"
)

server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(args.port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(launch)
factory.set_shared(False)


def on_configure(_factory, media):
    if args.stall_after > 0:
        gate = media.get_element().get_by_name("gate")

        def freeze():
            gate.set_property("drop", True)
            print("stalled", flush=True)
            return False

        GLib.timeout_add(int(args.stall_after * 1000), freeze)


factory.connect("media-configure", on_configure)
if args.user:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", args.user)
    basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password)
    auth.add_basic(basic, token)
    server.set_auth(auth)
    perms = GstRtspServer.RTSPPermissions()
    perms.add_role(args.user)
    perms.add_permission_for_role(args.user, "media.factory.access", True)
    perms.add_permission_for_role(args.user, "media.factory.construct", True)
    factory.set_permissions(perms)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    print("cannot listen", file=sys.stderr)
    sys.exit(1)
print("ready", flush=True)
GLib.MainLoop().run()
