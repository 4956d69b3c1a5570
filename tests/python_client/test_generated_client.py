"""Drives the real server with the client openapi-python-client generated
from openapi/openapi.json, as an integrator would: join, send, long-poll,
leave, and a problem parsed as a Problem; a join with a grant minted by
docs/backend.md's own lines; and the back end's calls with the admin token."""

import base64
import http.server
import os
import queue
import re
import subprocess
import threading
import unittest
from http import HTTPStatus

from signalpost_client import AuthenticatedClient, Client
from signalpost_client.api.admin import create_room, end_room, send_service_signal
from signalpost_client.api.inbox import poll_events
from signalpost_client.api.rooms import join_room, leave_room
from signalpost_client.api.signals import send_signal
from signalpost_client.models import (
    JoinRequest,
    JoinResponse,
    MemberJoinedEvent,
    RoomCreate,
    RoomView,
    PollResponse,
    Problem,
    SignalEvent,
    SignalRequest,
)

DEADLINE_SECS = 5


class Server:
    """The signalpost binary on a free loopback port, found by its log line."""

    def __init__(self, *args):
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        self.process = subprocess.Popen(
            [os.environ["SIGNALPOST_BIN"], "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        found = {}

        def read():
            for line in self.process.stdout:
                if "listening on " in line and "addr" not in found:
                    found["addr"] = line.rsplit("listening on ", 1)[1].split()[0]
                    ready.set()

        ready = threading.Event()
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(DEADLINE_SECS):
            self.process.kill()
            raise RuntimeError("the server did not log `listening on ADDR`")
        self.base_url = f"http://{found['addr']}"

    def stop(self):
        self.process.terminate()
        self.process.wait(DEADLINE_SECS)
        self.process.stdout.close()


class GeneratedClientTest(unittest.TestCase):
    def setUp(self):
        self.server = Server()
        self.addCleanup(self.server.stop)

    def closed_later(self, client):
        self.addCleanup(client.get_httpx_client().close)
        return client

    def member(self, token):
        return self.closed_later(
            AuthenticatedClient(base_url=self.server.base_url, token=token, timeout=DEADLINE_SECS)
        )

    def test_join_send_poll_and_leave(self):
        anonymous = self.closed_later(Client(base_url=self.server.base_url, timeout=DEADLINE_SECS))
        alice = join_room.sync("py", client=anonymous, body=JoinRequest(name="alice"))
        bob = join_room.sync("py", client=anonymous, body=JoinRequest(name="bob"))
        self.assertIsInstance(alice, JoinResponse)
        self.assertIsInstance(bob, JoinResponse)
        self.assertTrue(alice.owner)
        self.assertEqual([m.id for m in bob.members], [alice.member.id])

        sent = send_signal.sync_detailed(
            client=self.member(bob.token),
            body=SignalRequest(to=alice.member.id, type_="offer", payload={"type": "offer", "sdp": "v=0"}),
        )
        self.assertEqual(sent.status_code, HTTPStatus.ACCEPTED)
        self.assertEqual(sent.parsed.recipients, 1)

        polled = poll_events.sync(
            "py", alice.member.id, client=self.member(alice.token), after=0, timeout=0
        )
        self.assertIsInstance(polled, PollResponse)
        self.assertEqual([(e.id, e.event) for e in polled.events], [(1, "member-joined"), (2, "signal")])
        # Typed: each event is its own class, with its data's.
        self.assertIsInstance(polled.events[0], MemberJoinedEvent)
        self.assertEqual(polled.events[0].data.member.name, "bob")
        self.assertIsInstance(polled.events[1], SignalEvent)
        self.assertEqual(polled.events[1].data.from_, bob.member.id)
        signal = polled.events[1].data.to_dict()
        self.assertEqual(signal["from"], str(bob.member.id))
        self.assertEqual(signal["payload"], {"type": "offer", "sdp": "v=0"})

        # A long-poll that waits, answered by a signal sent meanwhile.
        waiting = {}
        thread = threading.Thread(
            target=lambda: waiting.setdefault(
                "answer",
                poll_events.sync("py", alice.member.id, client=self.member(alice.token), after=2, timeout=4),
            )
        )
        thread.start()
        send_signal.sync(client=self.member(bob.token), body=SignalRequest(to=alice.member.id, type_="candidate", payload=1))
        thread.join(DEADLINE_SECS)
        self.assertEqual([(e.id, e.event) for e in waiting["answer"].events], [(3, "signal")])

        left = leave_room.sync_detailed("py", bob.member.id, client=self.member(bob.token))
        self.assertEqual(left.status_code, HTTPStatus.NO_CONTENT)
        refused = send_signal.sync(client=self.member(bob.token), body=SignalRequest(type_="chat"))
        self.assertIsInstance(refused, Problem)
        self.assertEqual((refused.status, refused.code), (401, "unauthorized"))


JOIN_SECRET = "a-secret-of-at-least-32-bytes-for-python"


def readme_grant():
    """Runs docs/backend.md's Python lines that mint a grant, as written."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "backend.md")) as readme:
        readme = readme.read()
    code = re.search(r"<!-- grant: python -->\n```python\n(.*?)```", readme, re.S).group(1)
    scope = {}
    os.environ["JOIN_SECRET"] = JOIN_SECRET
    exec(code, scope)
    return scope["grant"]


class GrantTest(unittest.TestCase):
    def setUp(self):
        self.server = Server("--join-secret", JOIN_SECRET)
        self.addCleanup(self.server.stop)

    def test_a_grant_from_the_readme_joins_through_the_generated_client(self):
        grant = readme_grant()
        client = AuthenticatedClient(base_url=self.server.base_url, token=grant, timeout=DEADLINE_SECS)
        self.addCleanup(client.get_httpx_client().close)
        joined = join_room.sync("demo", client=client, body=JoinRequest(name="ada"))
        self.assertIsInstance(joined, JoinResponse)
        self.assertEqual(joined.member.user_id, "user-42")

        anonymous = Client(base_url=self.server.base_url, timeout=DEADLINE_SECS)
        self.addCleanup(anonymous.get_httpx_client().close)
        refused = join_room.sync("demo", client=anonymous, body=JoinRequest(name="eve"))
        self.assertIsInstance(refused, Problem)
        self.assertEqual((refused.status, refused.code), (401, "unauthorized"))
        elsewhere = join_room.sync("elsewhere", client=client, body=JoinRequest())
        self.assertEqual((elsewhere.status, elsewhere.code), (403, "forbidden"))


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


class WebhookTest(unittest.TestCase):
    """A receiver that checks each POST with the Standard Webhooks library."""

    def setUp(self):
        from standardwebhooks.webhooks import Webhook

        received = queue.Queue()
        checker = Webhook(WEBHOOK_SECRET)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    received.put(checker.verify(body, dict(self.headers)))
                    self.send_response(204)
                except Exception as error:  # a signature the library refuses
                    received.put(error)
                    self.send_response(400)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.receiver = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
        self.addCleanup(self.receiver.server_close)
        self.addCleanup(self.receiver.shutdown)
        url = f"http://127.0.0.1:{self.receiver.server_address[1]}/hook"
        self.server = Server("--webhook-url", url, "--webhook-secret", WEBHOOK_SECRET)
        self.addCleanup(self.server.stop)
        self.received = received

    def test_the_standard_webhooks_library_accepts_every_notice(self):
        client = Client(base_url=self.server.base_url, timeout=DEADLINE_SECS)
        self.addCleanup(client.get_httpx_client().close)
        joined = join_room.sync("hooked", client=client, body=JoinRequest(name="ada"))
        self.assertIsInstance(joined, JoinResponse)
        notices = [self.received.get(timeout=DEADLINE_SECS) for _ in range(2)]
        for notice in notices:
            self.assertIsInstance(notice, dict, notice)
        self.assertEqual([n["type"] for n in notices], ["room-created", "member-joined"])
        self.assertEqual(notices[1]["data"]["member"]["id"], str(joined.member.id))


ADMIN_TOKEN = "an-admin-token-for-the-python-client"


class ServiceTest(unittest.TestCase):
    """The back end's calls, with the admin token: a room made in advance,
    a signal from the service, the room ended."""

    def setUp(self):
        self.server = Server("--admin-token", ADMIN_TOKEN)
        self.addCleanup(self.server.stop)

    def client(self, token=None):
        if token is None:
            client = Client(base_url=self.server.base_url, timeout=DEADLINE_SECS)
        else:
            client = AuthenticatedClient(base_url=self.server.base_url, token=token, timeout=DEADLINE_SECS)
        self.addCleanup(client.get_httpx_client().close)
        return client

    def test_the_service_makes_signals_and_ends_a_room(self):
        admin = self.client(ADMIN_TOKEN)
        made = create_room.sync_detailed(
            "standup", client=admin, body=RoomCreate(capacity=3, password="sesame", empty_timeout=60)
        )
        self.assertEqual(made.status_code, HTTPStatus.CREATED)
        self.assertIsInstance(made.parsed, RoomView)
        self.assertEqual((made.parsed.capacity, made.parsed.owner, made.parsed.members), (3, None, []))
        again = create_room.sync("standup", client=admin, body=RoomCreate())
        self.assertEqual((again.status, again.code), (409, "room_exists"))

        joined = join_room.sync("standup", client=self.client(), body=JoinRequest(password="sesame"))
        self.assertIsInstance(joined, JoinResponse)
        member = self.client(joined.token)
        sent = send_service_signal.sync("standup", client=admin, body=SignalRequest(type_="notice"))
        self.assertEqual(sent.recipients, 1)
        ended = end_room.sync_detailed("standup", client=admin)
        self.assertEqual(ended.status_code, HTTPStatus.NO_CONTENT)
        # The membership went with the room.
        refused = poll_events.sync("standup", joined.member.id, client=member, after=0, timeout=0)
        self.assertEqual((refused.status, refused.code), (401, "unauthorized"))


if __name__ == "__main__":
    unittest.main()
