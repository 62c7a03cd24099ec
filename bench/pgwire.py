"""A minimal PostgreSQL client (protocol 3.0, simple query, trust auth)
over a unix socket, standard library only.

The benchmark times calls client-side over one persistent connection; going
through psql would add its own parsing and printing to every figure, so it
speaks the protocol directly. Only what the benchmark needs is here: text
results, errors raised as exceptions, notices ignored.
"""

import socket
import struct


class PgError(Exception):
    def __init__(self, fields):
        self.fields = fields
        super().__init__(f"{fields.get('S', 'ERROR')}: {fields.get('M', '?')}"
                         + (f" ({fields['C']})" if 'C' in fields else ""))


class Conn:
    def __init__(self, sockdir, port, dbname, user="postgres", appname="peb-bench"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(f"{sockdir}/.s.PGSQL.{port}")
        self.buf = b""
        params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in
                          (("user", user), ("database", dbname), ("application_name", appname)))
        body = struct.pack("!i", 196608) + params + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        while True:
            typ, payload = self._msg()
            if typ == b"R":
                code = struct.unpack("!i", payload[:4])[0]
                if code != 0:
                    raise RuntimeError(f"server asks for authentication (code {code}); the bench cluster uses trust")
            elif typ == b"E":
                raise PgError(self._fields(payload))
            elif typ == b"Z":
                break
        self.pid = int(self.query("SELECT pg_backend_pid()")[0][0])

    def _recv(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _msg(self):
        head = self._recv(5)
        typ, length = head[:1], struct.unpack("!i", head[1:])[0]
        return typ, self._recv(length - 4)

    @staticmethod
    def _fields(payload):
        fields = {}
        for part in payload.split(b"\0"):
            if part:
                fields[chr(part[0])] = part[1:].decode(errors="replace")
        return fields

    def query(self, sql):
        """Runs `sql`; returns the rows of the last result as lists of str/None."""
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(data) + 4) + data)
        rows, error = [], None
        while True:
            typ, payload = self._msg()
            if typ == b"T":
                rows = []
            elif typ == b"D":
                n = struct.unpack("!h", payload[:2])[0]
                pos, row = 2, []
                for _ in range(n):
                    ln = struct.unpack("!i", payload[pos:pos + 4])[0]
                    pos += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(payload[pos:pos + ln].decode())
                        pos += ln
                rows.append(row)
            elif typ == b"E":
                error = PgError(self._fields(payload))
            elif typ == b"Z":
                if error:
                    raise error
                return rows

    def value(self, sql):
        return self.query(sql)[0][0]

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        self.sock.close()
