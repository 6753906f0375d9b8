# A TCP proxy in front of PostgreSQL that simulates its client being cut off
# from the database: once a client->server chunk contains NEEDLE (hex), that
# connection's server side is shut down at once (the server rolls back and
# frees its locks, as after its keepalive noticed a dead peer) while its
# client side stays open and hears nothing ever again (a black hole); every
# other connection follows OTHERS_AFTER seconds later (so what the client
# was finishing on them, e.g. answering the request whose deploy is being
# recorded, is not caught in between), and new connections are then
# accepted but never answered. FLAG is created at the first cut.
import socket, sys, threading

listen_port, up_port, needle_hex, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
needle = bytes.fromhex(needle_hex)
OTHERS_AFTER = 1.0
frozen = threading.Event()
first_cut = threading.Event()
ups = []
lock = threading.Lock()

def freeze():
    frozen.set()
    with lock:
        for u in ups:
            try:
                u.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def cut_off(u, cut):
    cut.set()
    try:
        u.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    with lock:
        if first_cut.is_set():
            return
        first_cut.set()
    open(flag, "w").close()
    threading.Timer(OTHERS_AFTER, freeze).start()

def client_to_server(c, u, cut):
    try:
        while True:
            data = c.recv(65536)
            if not data:
                break
            if frozen.is_set() or cut.is_set():
                continue
            if needle in data:
                cut_off(u, cut)
                continue
            u.sendall(data)
    except OSError:
        pass

def server_to_client(u, c, cut):
    try:
        while True:
            data = u.recv(65536)
            if not data or frozen.is_set() or cut.is_set():
                return  # never close the client: it hears nothing
            c.sendall(data)
    except OSError:
        pass

def swallow(c):
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", listen_port))
s.listen(64)
# The test waits for this line before it connects through the proxy.
print("listening", flush=True)
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)
    if frozen.is_set():
        threading.Thread(target=swallow, args=(c,), daemon=True).start()
        continue
    u = socket.create_connection(("127.0.0.1", up_port))
    with lock:
        ups.append(u)
    cut = threading.Event()
    threading.Thread(target=client_to_server, args=(c, u, cut), daemon=True).start()
    threading.Thread(target=server_to_client, args=(u, c, cut), daemon=True).start()
