"""Write envs/requirements.lock: every package of the pip side pinned with its sha256.

    pip install --dry-run --ignore-installed --report report.json -e .
    python envs/lock.py report.json > envs/requirements.lock

envs/horse-c.lock, the `corrupt` rule's (envs/horse-c.yaml), is the same lock plus the horse-c extra: resolve
`-e ".[horse-c]"` with the first lock's versions as constraints (`-c`, without the hashes), then lock.py (and
its header line says which env it is).

The hashes are those of the files pip chose for Linux x86-64 and CPython 3.11.
"""

import json
import sys

report = json.load(open(sys.argv[1]))
print("# pip side of envs/oodpose.yaml, Linux x86-64, CPython 3.11; made by envs/lock.py")
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    hashes = item["download_info"].get("archive_info", {}).get("hashes", {})
    if "sha256" in hashes:  # the project itself (an editable install) has none
        print(f"{item['metadata']['name'].lower()}=={item['metadata']['version']} --hash=sha256:{hashes['sha256']}")
