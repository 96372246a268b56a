"""S3 addresses and the S3-compatible services Safekeep knows by name (no SDK needed here).

An S3 location is written as restic writes it::

    s3:https://host[:port]/bucket[/prefix]     explicit scheme (http only when written out)
    s3:host[:port]/bucket[/prefix]             https implied
    s3:s3.amazonaws.com/bucket/prefix          AWS

:func:`parse_address` turns the part after ``s3:`` into an :class:`S3Address`. It lives here, not in
the provider, so the setup wizard and the IAM policy printer work without boto3 installed.

:data:`PRESETS` is the table the setup wizard offers: for each service the endpoint (a template
with ``{region}`` and, for some, ``{account}`` or ``{endpoint}``), a default region, whether it
wants path-style addressing, whether it offers Object Lock, and *notes* telling an office
administrator where the service's console hides the access keys. :func:`location_for` turns
(preset, region, bucket, prefix) into a location string, and :func:`guess_region` recovers the
region from an endpoint host so the location string alone is enough to sign requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from safekeep.storage.errors import InvalidLocation

AWS_DEFAULT_REGION = "us-east-1"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,254}$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class S3Address:
    """A parsed ``s3:`` location: where the service is, which bucket, which folder in it."""

    secure: bool
    host: str
    port: int | None
    bucket: str
    prefix: str

    @property
    def endpoint(self) -> str:
        """The endpoint URL, e.g. ``https://s3.eu-central-1.wasabisys.com`` or ``http://127.0.0.1:9000``."""
        scheme = "https" if self.secure else "http"
        port = f":{self.port}" if self.port is not None else ""
        return f"{scheme}://{self.host}{port}"

    @property
    def is_aws(self) -> bool:
        host = self.host.lower()
        return host == "s3.amazonaws.com" or host.endswith(".amazonaws.com")


def parse_address(raw: str, rest: str) -> S3Address:
    """Parse ``rest`` (``raw`` without ``s3:``). Raises ``InvalidLocation`` with a clear message."""
    text = rest.strip()
    usage = (
        "Write it as s3:https://host/bucket/folder, e.g. s3:s3.eu-central-1.wasabisys.com/mybucket/backup."
    )
    if text.lower().startswith(("http://", "https://")):
        parts = urlsplit(text)
        secure = parts.scheme.lower() == "https"
        netloc = parts.netloc
        path = parts.path
        if parts.query or parts.fragment:
            raise InvalidLocation(f"The S3 location {raw!r} must not contain '?' or '#'.", hint=usage)
    else:
        if "://" in text:
            raise InvalidLocation(f"The S3 location {raw!r} uses an unknown protocol.", hint=usage)
        secure = True
        netloc, _, path = text.partition("/")
        path = "/" + path
    if "@" in netloc:
        raise InvalidLocation(
            f"The S3 location {raw!r} contains a user name; S3 keys are not written in the location.",
            hint="Remove the part before '@' and give the keys as AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or in the app's key store).",
        )
    host, port = _split_host_port(raw, netloc, usage)
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise InvalidLocation(f"The S3 location {raw!r} names no bucket.", hint=usage)
    bucket = segments[0]
    if not _BUCKET_RE.match(bucket) or len(bucket) < 3 or len(bucket) > 255:
        raise InvalidLocation(
            f"{bucket!r} in {raw!r} is not a valid bucket name.",
            hint="Bucket names are 3 to 63 lower-case letters, digits, dots and hyphens.",
        )
    if any(s in (".", "..") for s in segments[1:]):
        raise InvalidLocation(f"The folder in {raw!r} must not contain '.' or '..'.", hint=usage)
    return S3Address(secure=secure, host=host, port=port, bucket=bucket, prefix="/".join(segments[1:]))


def _split_host_port(raw: str, netloc: str, usage: str) -> tuple[str, int | None]:
    if not netloc:
        raise InvalidLocation(f"The S3 location {raw!r} names no server.", hint=usage)
    host, port_text = netloc, ""
    if netloc.startswith("["):  # IPv6 literal
        end = netloc.find("]")
        if end < 0:
            raise InvalidLocation(f"The server address in {raw!r} is malformed.", hint=usage)
        host, port_text = netloc[: end + 1], netloc[end + 1 :].lstrip(":")
    elif ":" in netloc:
        host, port_text = netloc.rsplit(":", 1)
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidLocation(f"The port in {raw!r} must be a number from 1 to 65535.", hint=usage)
        port = int(port_text)
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]", host):
        raise InvalidLocation(f"The server name in {raw!r} is not valid.", hint=usage)
    return host, port


# -- presets ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Preset:
    """One S3-compatible service as the setup wizard offers it."""

    key: str
    name: str
    endpoint: str
    """Host template: ``{region}``, ``{account}`` (R2 account id, OCI namespace) or ``{endpoint}``
    (a host the user types, for self-hosted services)."""
    default_region: str
    regions: tuple[str, ...] = ()
    """Examples shown to the user; not exhaustive."""
    path_style: bool = True
    object_lock: bool = False
    """The service offers S3 Object Lock (retention) on buckets created with it."""
    notes: str = ""
    """Where to find the access key and secret key, in plain words."""

    @property
    def needs_account(self) -> bool:
        return "{account}" in self.endpoint

    @property
    def needs_endpoint(self) -> bool:
        return "{endpoint}" in self.endpoint


PRESETS: dict[str, S3Preset] = {
    p.key: p
    for p in (
        S3Preset(
            "aws",
            "Amazon S3",
            "s3.{region}.amazonaws.com",
            AWS_DEFAULT_REGION,
            ("us-east-1", "us-west-2", "eu-central-1", "eu-west-1", "ap-southeast-2"),
            path_style=False,
            object_lock=True,
            notes="AWS console → IAM → Users → (a user just for backups) → Security credentials → "
            "Create access key. Give that user only the policy `safekeep storage policy` prints.",
        ),
        S3Preset(
            "b2",
            "Backblaze B2 (S3 API)",
            "s3.{region}.backblazeb2.com",
            "us-west-004",
            ("us-west-000", "us-west-001", "us-west-002", "us-west-004", "us-east-005", "eu-central-003"),
            object_lock=True,
            notes="Backblaze web site → App Keys → Add a New Application Key (restricted to the "
            "bucket). The keyID is the access key, the applicationKey the secret key; the bucket "
            "page shows its S3 endpoint (the region is the part after 's3.').",
        ),
        S3Preset(
            "wasabi",
            "Wasabi",
            "s3.{region}.wasabisys.com",
            "us-east-1",
            ("us-east-1", "us-east-2", "us-west-1", "eu-central-1", "eu-west-1", "ap-northeast-1"),
            object_lock=True,
            notes="Wasabi console → Access Keys → Create new access key (better: a sub-user with "
            "a policy limited to the bucket).",
        ),
        S3Preset(
            "minio",
            "MinIO (self-hosted)",
            "{endpoint}",
            "us-east-1",
            object_lock=True,
            notes="MinIO console → Access Keys → Create access key. The endpoint is your MinIO "
            "server's address and port (usually 9000), e.g. https://nas.example.org:9000.",
        ),
        S3Preset(
            "ibm",
            "IBM Cloud Object Storage",
            "s3.{region}.cloud-object-storage.appdomain.cloud",
            "us-south",
            ("us-south", "us-east", "eu-de", "eu-gb", "jp-tok", "au-syd"),
            object_lock=True,
            notes="IBM Cloud → your Object Storage instance → Service credentials → New credential "
            "with 'Include HMAC Credential' on; use cos_hmac_keys.access_key_id and "
            "cos_hmac_keys.secret_access_key.",
        ),
        S3Preset(
            "filebase",
            "Filebase",
            "s3.filebase.com",
            "us-east-1",
            notes="Filebase console → Access Keys: the Key is the access key, the Secret the secret key.",
        ),
        S3Preset(
            "zadara",
            "Zadara Object Storage",
            "{endpoint}",
            "us-east-1",
            notes="Zadara VPSA Object Storage console → your user → Security credentials / "
            "S3 keys. The endpoint is the object storage address your Zadara provider gave you.",
        ),
        S3Preset(
            "oracle",
            "Oracle Cloud (OCI) Object Storage, S3 compatibility API",
            "{account}.compat.objectstorage.{region}.oraclecloud.com",
            "us-ashburn-1",
            ("us-ashburn-1", "us-phoenix-1", "eu-frankfurt-1", "uk-london-1", "ap-sydney-1"),
            notes="OCI console → Profile → My profile (User settings) → Customer secret keys → "
            "Generate secret key. The account is your Object Storage namespace (Tenancy details).",
        ),
        S3Preset(
            "digitalocean",
            "DigitalOcean Spaces",
            "{region}.digitaloceanspaces.com",
            "nyc3",
            ("nyc3", "ams3", "sgp1", "fra1", "sfo3", "syd1"),
            notes="DigitalOcean control panel → API → Spaces Keys → Generate New Key.",
        ),
        S3Preset(
            "r2",
            "Cloudflare R2",
            "{account}.r2.cloudflarestorage.com",
            "auto",
            notes="Cloudflare dashboard → R2 → Manage R2 API Tokens → Create API token (Object "
            "Read & Write, limited to the bucket). The account is your Cloudflare account ID.",
        ),
        S3Preset(
            "gcs",
            "Google Cloud Storage (HMAC interoperability keys)",
            "storage.googleapis.com",
            "auto",
            notes="Google Cloud console → Cloud Storage → Settings → Interoperability → Create a "
            "key for a service account. The Access key and Secret are the S3 keys.",
        ),
    )
}


def location_for(
    preset: str | S3Preset,
    region: str,
    bucket: str,
    prefix: str = "",
    *,
    account: str = "",
    endpoint: str = "",
) -> str:
    """The location string for ``bucket``/``prefix`` at a preset service.

    ``region`` empty means the preset's default. ``account`` fills ``{account}`` (R2 account id,
    OCI namespace); ``endpoint`` fills ``{endpoint}`` and may carry ``http://`` (then plain HTTP
    is used) and a port. Raises ``InvalidLocation`` when something the preset needs is missing.
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    region = region.strip() or p.default_region
    secure = True
    host = p.endpoint
    if p.needs_endpoint:
        ep = endpoint.strip().rstrip("/")
        if not ep:
            raise InvalidLocation(f"{p.name} needs the server's address.", hint="Enter it, e.g. nas:9000.")
        if ep.lower().startswith("http://"):
            secure, ep = False, ep[7:]
        elif ep.lower().startswith("https://"):
            ep = ep[8:]
        host = host.replace("{endpoint}", ep)
    if p.needs_account:
        if not account.strip():
            raise InvalidLocation(f"{p.name} needs your account identifier.", hint=p.notes)
        host = host.replace("{account}", account.strip())
    if p.key == "aws" and region == AWS_DEFAULT_REGION:
        host = "s3.amazonaws.com"
    host = host.replace("{region}", region)
    path = "/".join(s for s in [bucket.strip("/"), prefix.strip("/")] if s)
    text = f"s3:{'https' if secure else 'http'}://{host}/{path}"
    parse_address(text, text[3:])  # refuse what could not be opened
    return text


def _template_regex(template: str) -> re.Pattern[str]:
    out = ""
    for piece in re.split(r"(\{region\}|\{account\}|\{endpoint\})", template):
        if piece == "{region}":
            out += r"(?P<region>[a-z0-9\-]+)"
        elif piece in ("{account}", "{endpoint}"):
            out += r"[A-Za-z0-9\-]+" if piece == "{account}" else r".+"
        else:
            out += re.escape(piece)
    return re.compile(out + r"\Z", re.IGNORECASE)


def preset_for_host(host: str) -> S3Preset | None:
    """The preset whose endpoint template matches ``host`` (none for self-hosted services)."""
    if host.lower() == "s3.amazonaws.com":
        return PRESETS["aws"]
    for p in PRESETS.values():
        if not p.needs_endpoint and _template_regex(p.endpoint).match(host):
            return p
    return None


def guess_region(host: str) -> str | None:
    """The signing region an endpoint host implies (``s3.eu-central-1.wasabisys.com`` →
    ``eu-central-1``), the preset's default for hosts without one, or None if unknown."""
    p = preset_for_host(host)
    if p is None:
        m = re.match(r"^s3[.\-](?P<region>[a-z]{2}-[a-z]+-\d)\.amazonaws\.com$", host, re.IGNORECASE)
        return m.group("region") if m else None
    m = _template_regex(p.endpoint).match(host)
    if m is not None and "region" in m.groupdict():
        return m.group("region").lower()
    return p.default_region
