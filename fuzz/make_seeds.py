#!/usr/bin/env python3
"""Write the seed corpus under fuzz/corpus/<target>/seed-*.

Run from anywhere: python3 fuzz/make_seeds.py. Deterministic; the output is
committed, this script only documents how it was made. Signed tokens use KEY,
the key the token_parse target also tries, so the fuzzer starts past the
signature check with tokens shaped like @trigger.dev/core's generateJWT.
"""
import base64, hashlib, hmac, json, os, random, shutil

KEY = b"tr_dev_FuzzSeedKey0123456789abcd"
OTHER = b"tr_prod_SomeoneElsesKey012345678"
IAT, EXP = 1700000000, 1700000900
ISS, AUD = "https://id.trigger.dev", "https://api.trigger.dev"
HERE = os.path.dirname(os.path.abspath(__file__))


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def js(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def token(header, claims, key=KEY, alg=hashlib.sha256, raw_header=None, raw_claims=None):
    h = b64(raw_header if raw_header is not None else js(header))
    p = b64(raw_claims if raw_claims is not None else js(claims))
    inp = f"{h}.{p}"
    sig = b64(hmac.new(key, inp.encode(), alg).digest())
    return f"{inp}.{sig}"


def sdk(**over):
    c = {"sub": "env_1abcdefghijklmnopqrstuv", "pub": True, "scopes": ["read:runs"],
         "iss": ISS, "aud": AUD, "iat": IAT, "exp": EXP}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


HS = {"alg": "HS256"}
good = token(HS, sdk())

tokens = {
    "sdk-hs256": good,
    "sdk-write-task": token(HS, sdk(scopes=["write:tasks:foo", "read:runs:run_123"])),
    "sdk-realtime-otu": token(HS, sdk(realtime={"skipColumns": ["payload"]}, otu=True, scopes=["read:runs", "read:tags:x"])),
    "sdk-no-scopes": token(HS, sdk(scopes=None)),
    "typ-jwt": token({"alg": "HS256", "typ": "JWT"}, sdk()),
    "aud-array": token(HS, sdk(aud=["other", AUD])),
    "exp-float": token(HS, sdk(exp=1700000900.5)),
    "nbf-future": token(HS, sdk(nbf=1800000000)),
    "expired": token(HS, sdk(exp=IAT - 1)),
    "no-exp": token(HS, sdk(exp=None)),
    "exp-string": token(HS, sdk(exp="1700000900")),
    "exp-huge": token(HS, sdk(), raw_claims=js(sdk())[:-11] + b"1e308}"),
    "wrong-iss": token(HS, sdk(iss="https://evil.example")),
    "wrong-aud": token(HS, sdk(aud="https://api.evil.example")),
    "pub-false": token(HS, sdk(pub=False)),
    "pub-string": token(HS, sdk(pub="true")),
    "scopes-string": token(HS, sdk(scopes="admin")),
    "scopes-mixed": token(HS, sdk(scopes=["admin", 1, None])),
    "no-sub": token(HS, sdk(sub=None)),
    "sub-number": token(HS, sdk(sub=42)),
    "sub-empty": token(HS, sdk(sub="")),
    "sub-long": token(HS, sdk(sub="e" * 129)),
    "sub-unicode": token(HS, sdk(sub="env_ünïcödé\u0000\u202e")),
    "other-key": token(HS, sdk(), key=OTHER),
    "alg-none-unsigned": f"{b64(js({'alg': 'none'}))}.{b64(js(sdk()))}.",
    "alg-none-signed": token({"alg": "none"}, sdk()),
    "alg-hs512": token({"alg": "HS512"}, sdk(), alg=hashlib.sha512),
    "alg-hs384": token({"alg": "HS384"}, sdk(), alg=hashlib.sha384),
    "alg-rs256": token({"alg": "RS256", "typ": "JWT"}, sdk()),
    "alg-lowercase": token({"alg": "hs256"}, sdk()),
    "alg-missing": token({"typ": "JWT"}, sdk()),
    "alg-array": token({"alg": ["HS256"]}, sdk()),
    "crit-b64": token({"alg": "HS256", "crit": ["b64"], "b64": False}, sdk()),
    "dup-alg": token(None, sdk(), raw_header=b'{"alg":"none","alg":"HS256"}'),
    "header-array": token(None, sdk(), raw_header=b'["HS256"]'),
    "payload-array": token(HS, None, raw_claims=b"[1,2,3]"),
    "payload-string": token(HS, None, raw_claims=b'"pub"'),
    "payload-bom": token(HS, None, raw_claims=b"\xef\xbb\xbf" + js(sdk())),
    "payload-deep": token(HS, None, raw_claims=b'{"pub":true,"x":' + b"[" * 200 + b"]" * 200 + b"}"),
    "payload-escapes": token(HS, None, raw_claims=b'{"sub":"env_\\u0031","pub":true,"iss":"https:\\/\\/id.trigger.dev","aud":"https://api.trigger.dev","exp":1700000900}'),
    "truncated-sig": good[:-1],
    "truncated-payload": good[: good.index(".") + 20],
    "truncated-header": good[:10],
    "sig-noncanonical": good[:-1] + ("B" if good[-1] == "A" else chr(ord(good[-1]) ^ 1)),
    "sig-padded": good + "=",
    "std-alphabet": good.replace("-", "+").replace("_", "/"),
    "four-parts": good + ".e30",
    "two-parts": good.rsplit(".", 1)[0],
    "empty-parts": "..",
    "dots": "....",
    "bearer-prefix": "Bearer " + good,
    "whitespace": " " + good + "\n",
    "secret-key": "tr_dev_abcdefghijklmnopqrstuvwx",
    "publishable-key": "pk_prod_abcdefghijklmnopqrstuvwx",
    "e30": "eyJhbGciOiJIUzI1NiJ9.e30.e30",
}

scopes = {
    "session-task": "write\n@tasks=foo\n@sessions\nwrite:tasks:foo",
    "session-other-task": "write\n@tasks=bar\n@sessions\nwrite:tasks:foo",
    "session-type": "write\n@tasks=bar\n@sessions\nwrite:sessions",
    "write-all": "write\n@tasks=bar\n@sessions\nwrite:all",
    "admin": "write\n@tasks=foo\n@sessions\nadmin",
    "read-only": "write\n@tasks=foo\n@sessions\nread:sessions\nread:all\nread:tasks:foo",
    "junk-and-good": "write\n@tasks=foo\n@sessions\njunk\nwrite::foo\n:tasks\nwrite:tasks:foo",
    "colon-id": "read\n@runs=a:b\nread:runs:a:b\nread:runs:a",
    "malformed": "write\n@tasks=foo\n\nwrite\nwrite:\nwrite:tasks:\nwrite:all:x\nADMIN \n admin\nwr ite:tasks",
    "control-in-id": "write\n@tasks=a\tb\nwrite:tasks:a\tb\nwrite:tasks:a\rb",
    "unicode": "read\n@runs=ünï\nread:runs:ünï\nread:rüns\nréad:all",
    "no-resources": "write\nadmin\nwrite:all",
    "single-scope-newline": "write:tasks:a\nb",
    "long-id": "read\n@runs=" + "x" * 600 + "\nread:runs:" + "x" * 600,
    "sdk-realtime": "read\n@runs=run_1234\n@tags=my-tag\n@batch=batch_1\nread:runs:run_1234\nread:tags:my-tag\nread:batch:batch_1",
    "trigger": "trigger\n@tasks=my-task\ntrigger:tasks:my-task\ntrigger:tasks",
    "all-as-kind": "read\n@all\nread:all\nread:all:x",
}

expirations = {
    "15m": "15m", "1h": "1h", "2d": "2d", "90-seconds": "90 seconds", "hour-spaced": " 1 Hour ",
    "1w": "1w", "1y": "1y", "366d": "366d", "367d": "367d", "epoch": "1700000900",
    "epoch-with-now": "1700000900\n1700000000", "0s": "0s", "2y": "2y",
    "overflow-mul": "9223372036854775807d", "overflow-epoch": "99999999999999999999",
    "negative": "-1h", "fraction": "1.5h", "compound": "1h30m", "words": "ten minutes",
    "unknown-unit": "1x", "unit-only": "h", "max-epoch-negative-now": "9223372036854775807\n-1",
    "tab-unit": "5\tmins", "unicode-space": "5\u00a0mins", "leading-zeros": "0000000000000000000000001h",
}

keys = {
    "secret": "tr_prod_abcdefghijklmnopqrstuvyz",
    "publishable": "pk_preview_0123456789abcdefABCDEFGH",
    "short": "tr_dev_short",
    "empty": "",
    "unicode": "ünïcödé_ünïcödéünïcödé",
    "key-with-suffix": "tr_prod_abcdefghijklmnopqrstuvwx_branch",
    "key-trailing-underscore": "tr_stg_abcdefghijklmnopqrstuvwx_",
    "two-keys": "tr_prod_abcdefghijklmnopqrstuvwx tr_dev_ABCDEFGHIJKLMNOPQRSTUVWX",
    "no-underscore": "abcdefghijklmnopqrstuvwxyz0123456789",
    "unknown-env": "tr_qa_abcdefghijklmnopqrstuvwx",
    "jwt": good,
}


def write(target, items, enc=lambda v: v.encode()):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, v in items.items():
        with open(os.path.join(d, f"seed-{name}"), "wb") as f:
            f.write(enc(v))


write("token_parse", tokens)
write("scopes", scopes)
write("expiration", expirations)
write("keys", keys)
rng = random.Random(6)
write("token_roundtrip",
      {f"bytes-{n}": bytes(rng.randrange(256) for _ in range(n)) for n in (16, 64, 256, 1024)}
      | {"sdk-token-bytes": good.encode(), "scopes-text": scopes["sdk-realtime"].encode()},
      enc=lambda v: v)
