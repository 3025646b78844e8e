"""Python azure-storage-blob peer for bench/blob_transfer.R.

usage: peer_python.py upload|download|sas ENDPOINT ACCOUNT KEY CONTAINER BLOB [FILE]
Prints the seconds the transfer took (the SDK's own parallel transfer, max_concurrency=4),
or for `sas` a read/write SAS URL for the blob (used by the curl peer).
"""
import sys
import time
from datetime import datetime, timedelta, timezone

from azure.storage.blob import BlobClient, BlobSasPermissions, generate_blob_sas

op, endpoint, account, key, container, blob = sys.argv[1:7]
url = f"{endpoint}/{container}/{blob}"
if op == "sas":
    sas = generate_blob_sas(account, container, blob, account_key=key,
                            permission=BlobSasPermissions(read=True, write=True, create=True),
                            expiry=datetime.now(timezone.utc) + timedelta(hours=2))
    print(f"{url}?{sas}")
    sys.exit(0)

# Same REST version as serveRless: the newest Azurite 3.35 accepts.
client = BlobClient.from_blob_url(url, credential={"account_name": account, "account_key": key},
                                  api_version="2025-11-05")
path = sys.argv[7]
start = time.perf_counter()
if op == "upload":
    with open(path, "rb") as f:
        client.upload_blob(f, overwrite=True, max_concurrency=4)
else:
    with open(path, "wb") as f:
        client.download_blob(max_concurrency=4).readinto(f)
print(f"{time.perf_counter() - start:.3f}")
