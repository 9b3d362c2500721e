"""A real Orthanc PACS on localhost for tests: free ports, a temporary storage folder, DICOMweb plugin, stopped after."""
from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
AET = "ORTHANC"
START_TIMEOUT_S = 30


@dataclasses.dataclass(frozen=True)
class Orthanc:
    """A running server: its REST base, STOW-RS and C-STORE addresses."""

    http: str
    dicom_port: int

    @property
    def stow(self) -> str:
        return f"{self.http}/dicom-web"

    @property
    def c_store(self) -> str:
        return f"dicom://{AET}@127.0.0.1:{self.dicom_port}"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.http + path, timeout=10) as response:
            return response.read()

    def post(self, path: str, body: bytes) -> bytes:
        request = urllib.request.Request(self.http + path, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def instance(self, sop_uid: str) -> str | None:
        """Orthanc's ID of the stored instance with this SOPInstanceUID, or None."""
        found = [hit["ID"] for hit in json.loads(self.post("/tools/lookup", sop_uid.encode()))
                 if hit["Type"] == "Instance"]
        return found[0] if found else None

    def delete_all(self) -> None:
        for patient in json.loads(self.get("/patients")):
            request = urllib.request.Request(f"{self.http}/patients/{patient}", method="DELETE")
            urllib.request.urlopen(request, timeout=10).read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """Start Orthanc once for the session (skipped where the Debian packages are not installed)."""
    if not (Path(ORTHANC).is_file() and Path(DICOMWEB_PLUGIN).is_file()):
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (apt-get install orthanc orthanc-dicomweb)")
    root = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port = _free_port(), _free_port()
    config = {"Name": "mammosynth-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
              "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": AET, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
              "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
              "StorageCompression": False, "ConcurrentJobs": 1, "HttpThreadsCount": 4}
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "wb")
    process = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            json.loads(server.get("/system"))
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.2)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root / "db", ignore_errors=True)
