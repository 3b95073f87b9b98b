# spec/fuzz/answers.py SEED LOG: a hostile HTTP/1.1 server for spec/fuzz/wire.sh. Every
# request it reads whole gets an answer made from SEED's random stream: one to three heads (1xx
# first at times) of odd status lines and header lines (folded, without a colon, with a NUL,
# a bare CR or LF, huge, conflicting framing), then an odd body (chunks of odd sizes and
# trailers, JSON or not), now and then with bytes changed (MUT, default 0.1, the chance) or cut
# short; with SPLIT=1 it is sent in pieces of 1-40 bytes a few milliseconds apart. Each answer
# goes to LOG (one Python bytes literal a line) before it is sent, so a finding is replayed
# from there. The connection is kept unless the random stream closes it. It listens on a free
# loopback port and prints it.
import os
import random
import socket
import sys
import threading
import time

SEED, LOG = int(sys.argv[1]), sys.argv[2]
MUT = float(os.environ.get("MUT", "0.1"))
SPLIT = os.environ.get("SPLIT") == "1"
rnd = random.Random(SEED)
log = open(LOG, "wb")
lock = threading.Lock()

JOB = b'{"jobid":"0123456789abcdef0123456789abcdef","status":"started","verb":"headshot"}'
STATUS = [b"HTTP/1.1 200 OK", b"HTTP/1.1 200", b"HTTP/1.0 200 OK", b"HTTP/1.1 404 Not Found",
          b"HTTP/1.1 429 Too Many", b"HTTP/1.1 500 X", b"HTTP/1.1 100 Continue", b"HTTP/1.1 103 Early",
          b"HTTP/1.1 101 Switching", b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 Not Modified",
          b"HTTP/2 200", b"HTTP/1.1 999 Z", b"HTTP/1.1 20", b"HTTP/1.1 200 O\x00K", b"ICY 200 OK",
          b"HTTP/1.1 200 " + b"x" * 300, b"HTTP/1.1 401 U", b"HTTP/1.1 302 Found"]
HEADERS = [b"Content-Length: 2", b"Content-Length: 0", b"Content-Length: x",
           b"Content-Length: 99999999999999999999", b"Content-Length: -1", b"Content-Length: 2, 2",
           b"Content-Length:  2 ", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
           b"Transfer-Encoding: identity", b"Content-Encoding: gzip", b" a: b", b"\tb", b" ", b"X-A b",
           b"X-A: b", b":", b": x", b"Connection: close", b"Connection: keep-alive", b"Retry-After: 1",
           b"Retry-After: 99999999999", b"Location: /x", b"Set-Cookie: a=b", b"X-A: " + b"y" * 70000,
           b"Content-Type: application/json", b"Content-Type: text/html", b"Upgrade: h2c",
           b"Trailer: X", b"WWW-Authenticate: Basic", b"Proxy-Connection: close",
           b"Keep-Alive: timeout=0", b"Content-Range: bytes 0-1/2", b"X-\x00A: b", b"X-A: b\r",
           b"Date: x", b'Alt-Svc: h3=":443"']
BODIES = [b"{}", JOB, b"", b"2\r\n{}\r\n0\r\n\r\n", b"2\r\n{}\r\n0\r\nX: y\r\n\r\n",
          b"2\r\n{}\r\n0\r\n a: b\r\n\r\n", b"ffffffffffffffffff\r\n", b"-1\r\n", b"2;ext\r\n{}\r\n0\r\n\r\n",
          b"0\r\n\r\n", b"\x1f\x8b\x08\x00", JOB * 3, b'{"jobid":"' + b"\xff" * 30 + b'"}',
          b"2\r\n{}\r\n0\r\nT: " + b"v" * 9000 + b"\r\n\r\n"]


def answer():
    heads = []
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        eol = rnd.choice([b"\r\n"] * 8 + [b"\n", b"\r"])
        lines = [rnd.choice(STATUS)] + [rnd.choice(HEADERS) for _ in range(rnd.randint(0, 5))]
        heads.append(b"".join(line + eol for line in lines) + eol)
    data = b"".join(heads) + rnd.choice(BODIES)
    if rnd.random() < MUT:
        changed = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            changed[rnd.randrange(len(changed))] = rnd.randrange(256)
        data = bytes(changed)
    if rnd.random() < 0.05:
        data = data[:rnd.randrange(len(data) + 1)]
    return data


def request(conn, buf):
    """The next request's head, and what came after its body; None at the connection's end."""
    while b"\r\n\r\n" not in buf:
        more = conn.recv(65536)
        if not more:
            return None, b""
        buf += more
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        more = conn.recv(65536)
        if not more:
            return None, b""
        rest += more
    return head, rest[length:]


def serve(conn):
    buf = b""
    conn.settimeout(5)
    try:
        while True:
            head, buf = request(conn, buf)
            if head is None:
                break
            with lock:  # (one random stream for every connection)
                data, close = answer(), rnd.random() < 0.1
                log.write(repr(data).encode() + b"\n")
                log.flush()
                pieces, i = [], 0
                while SPLIT and i < len(data):
                    step = rnd.randint(1, 40)
                    pieces.append((data[i:i + step], rnd.random() * 0.002))
                    i += step
            if not pieces:
                conn.sendall(data)
            for piece, pause in pieces:
                conn.sendall(piece)
                time.sleep(pause)
            if close:
                break
    except OSError:
        pass
    conn.close()


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(64)
print(server.getsockname()[1], flush=True)  # the port, for wire.sh
while True:
    client, _ = server.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
