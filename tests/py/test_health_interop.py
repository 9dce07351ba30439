"""grpc.health.v1.Health as an orchestrator or load balancer sees it, through Debian's
python3-grpcio: Check and Watch on the real batchd binary, and a graceful shutdown by SIGTERM.

The health messages come from the client's own copy of the protocol (/usr/share/grpc-proto);
the batch API and google.rpc error details from the project's contract (proto/), compiled here
with grpc_tools.protoc into a private descriptor pool: this test does not depend on reflection.

Run by ctest with BATCHD_SOURCE_DIR and BATCHD_BINARY_DIR, under /usr/bin/python3.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

SOURCE_DIR = os.environ["BATCHD_SOURCE_DIR"]
BINARY_DIR = os.environ["BATCHD_BINARY_DIR"]
BATCHD = os.path.join(BINARY_DIR, "server", "batchd")
UPSTREAM = os.path.join(BINARY_DIR, "tools", "upstream", "batchd-upstream")
TIMEOUT = 10

SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3


def compile_types(tmp):
    """A function from full message name to class, for health, batch.v1 and google.rpc."""
    from grpc_tools import protoc
    out = os.path.join(tmp, "types.pb")
    rc = protoc.main(["protoc", "-I/usr/share/grpc-proto", "-I" + os.path.join(SOURCE_DIR, "proto"),
                      "-I/usr/include", "--include_imports", "--descriptor_set_out=" + out,
                      "grpc/health/v1/health.proto", "batch/v1/batch.proto", "google/rpc/error_details.proto"])
    if rc != 0:
        sys.exit("grpc_tools.protoc failed (%d)" % rc)
    pool = descriptor_pool.DescriptorPool()
    with open(out, "rb") as f:
        for fd in descriptor_pb2.FileDescriptorSet.FromString(f.read()).file:
            pool.Add(fd)
    factory = None if hasattr(message_factory, "GetMessageClass") else message_factory.MessageFactory(pool)

    def cls(name):
        desc = pool.FindMessageTypeByName(name)
        return message_factory.GetMessageClass(desc) if factory is None else factory.GetPrototype(desc)
    return cls


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Every process the tests start; stop_all ends them whatever happened."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def upstream(self):
        port_file = os.path.join(self.tmp, "upstream.port")
        p = subprocess.Popen([UPSTREAM, "--port", "0", "--port-file", port_file], stdout=subprocess.DEVNULL)
        self.procs.append(p)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    return "http://127.0.0.1:" + text
            if p.poll() is not None:
                raise RuntimeError("batchd-upstream exited with %d" % p.returncode)
            time.sleep(0.02)
        raise RuntimeError("batchd-upstream did not write its port")

    def batchd(self, *flags):
        """(process, address) of a batchd that accepts calls; batchd does not say which port it
        bound, so one is picked here, and picked again if another process took it first."""
        for _ in range(5):
            addr = "127.0.0.1:%d" % free_port()
            p = subprocess.Popen([BATCHD, "--listen", addr, "--log-level", "warn"] + list(flags))
            self.procs.append(p)
            with grpc.insecure_channel(addr) as ch:
                try:
                    grpc.channel_ready_future(ch).result(timeout=TIMEOUT)
                    return p, addr
                except grpc.FutureTimeoutError:
                    pass
            if p.poll() is None:
                raise RuntimeError("batchd at %s does not accept calls" % addr)
        raise RuntimeError("batchd did not start")

    def stop_all(self):
        """Stops everything (SIGTERM, then SIGKILL after 15 s) and returns a complaint for
        each batchd that did not exit 0: a graceful stop must, and under the sanitizers a
        leak or an error changes the exit status."""
        bad = []
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if p.args[0] == BATCHD and p.returncode != 0:
                bad.append("batchd %s exited with %d" % (p.args[2], p.returncode))
        self.procs = []
        return bad


class Watcher:
    """A Health.Watch stream read on its own thread, so the test can wait for a given status
    with a timeout and see how the stream ended."""

    def __init__(self, stub, service):
        self.statuses = []
        self.error = None
        self.ended = threading.Event()
        self.changed = threading.Condition()
        self.call = stub(service)
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        try:
            for msg in self.call:
                with self.changed:
                    self.statuses.append(msg.status)
                    self.changed.notify_all()
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.ended.set()
            with self.changed:
                self.changed.notify_all()

    def wait_for(self, count, timeout=TIMEOUT):
        with self.changed:
            self.changed.wait_for(lambda: len(self.statuses) >= count or self.ended.is_set(), timeout)
            return list(self.statuses)


class HealthInterop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="health-interop-")
        cls.types = staticmethod(compile_types(cls.tmp.name))
        cls.procs = Processes(cls.tmp.name)
        try:
            cls.upstream_url = cls.procs.upstream()
        except BaseException:
            cls.procs.stop_all()
            raise

    @classmethod
    def tearDownClass(cls):
        bad = cls.procs.stop_all()
        cls.tmp.cleanup()
        if bad:
            raise AssertionError("; ".join(bad))

    def setUp(self):
        self.proc, addr = self.procs.batchd("--target", "api=" + self.upstream_url, "--shutdown-grace", "10s")
        self.channel = grpc.insecure_channel(addr)
        req = self.types("grpc.health.v1.HealthCheckRequest")
        resp = self.types("grpc.health.v1.HealthCheckResponse")
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=req.SerializeToString,
                                         response_deserializer=resp.FromString)
        watch = self.channel.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=req.SerializeToString,
                                          response_deserializer=resp.FromString)
        self.check = lambda service: check(req(service=service), timeout=TIMEOUT).status
        self.watch = lambda service: Watcher(lambda s: watch(req(service=s), timeout=30), service)

    def tearDown(self):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.assertEqual(self.proc.returncode, 0, "batchd's exit status after SIGTERM")

    def details(self, err):
        """{type name: message} of a failed call's google.rpc.Status, checked against the call."""
        trailers = dict(err.trailing_metadata() or ())
        self.assertIn("grpc-status-details-bin", trailers)
        status = self.types("google.rpc.Status").FromString(trailers["grpc-status-details-bin"])
        self.assertEqual(status.code, err.code().value[0])
        out = {a.type_url.split("/")[-1]: a for a in status.details}
        return {name: self.types(name).FromString(a.value) for name, a in out.items()}

    def assert_shutting_down(self, err):
        self.assertEqual(err.code(), grpc.StatusCode.UNAVAILABLE, err.details())
        d = self.details(err)
        self.assertEqual(d["google.rpc.ErrorInfo"].reason, "SHUTTING_DOWN")
        self.assertEqual(d["google.rpc.ErrorInfo"].domain, "batchd")
        self.assertGreater(d["google.rpc.RetryInfo"].retry_delay.ToNanoseconds(), 0)

    def test_check_serving_and_unknown(self):
        self.assertEqual(self.check(""), SERVING)
        self.assertEqual(self.check("batch.v1.BatchService"), SERVING)
        with self.assertRaises(grpc.RpcError) as caught:
            self.check("no.such.Service")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(self.details(caught.exception)["google.rpc.ErrorInfo"].reason, "UNKNOWN_SERVICE")

    def test_watch_of_an_unknown_service_streams_service_unknown_and_stays_open(self):
        w = self.watch("no.such.Service")
        self.assertEqual(w.wait_for(1), [SERVICE_UNKNOWN])
        time.sleep(0.3)
        self.assertFalse(w.ended.is_set(), "the stream stays open")
        w.call.cancel()
        self.assertTrue(w.ended.wait(TIMEOUT))
        self.assertEqual(w.error.code(), grpc.StatusCode.CANCELLED)

    def test_watch_across_a_graceful_shutdown(self):
        watchers = {s: self.watch(s) for s in ("", "batch.v1.BatchService", "no.such.Service")}
        for s, w in watchers.items():
            self.assertEqual(w.wait_for(1), [SERVICE_UNKNOWN if s == "no.such.Service" else SERVING], s)
        # A slow item keeps batchd draining, so that the draining state can be asked.
        submit = self.channel.unary_unary(
            "/batch.v1.BatchService/SubmitBatch",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.types("batch.v1.SubmitBatchResponse").FromString)
        request = lambda body: json_format.ParseDict(body, self.types("batch.v1.SubmitBatchRequest")())
        submit(request({"operations": [{"method": "GET", "path": "/slow?delay_ms=1500"}],
                        "options": {"mode": "MODE_ASYNC"}}), timeout=TIMEOUT)

        self.proc.send_signal(signal.SIGTERM)
        for s in ("", "batch.v1.BatchService"):
            self.assertEqual(watchers[s].wait_for(2), [SERVING, NOT_SERVING], s)
        self.assertEqual(self.check(""), NOT_SERVING)
        self.assertEqual(self.check("batch.v1.BatchService"), NOT_SERVING)
        with self.assertRaises(grpc.RpcError) as caught:
            submit(request({"operations": [{"method": "GET", "path": "/ok"}]}), timeout=TIMEOUT)
        self.assert_shutting_down(caught.exception)

        # When the item is done, every stream ends, after its last status, with UNAVAILABLE.
        for s, w in watchers.items():
            self.assertTrue(w.ended.wait(TIMEOUT), s)
            self.assertEqual(w.statuses, [SERVICE_UNKNOWN] if s == "no.such.Service" else [SERVING, NOT_SERVING])
            self.assert_shutting_down(w.error)
        self.assertEqual(self.proc.wait(timeout=15), 0, "batchd exits 0 after a graceful stop")


if __name__ == "__main__":
    unittest.main(verbosity=2)
