"""`orch stream`: a detector trained on the COCO fixture, run live on `local` and on a board behind a real sshd and
watched in headless Chromium. Frames arrive with each box drawn where the detector put it (read back from the
frame's pixels); the page refuses a request without the session's token, with another token or with another Host;
Stop stops the frames, End ends `orch stream` and the stream's process; nothing listens beyond 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from agent.pipeline.stages import colour
from orchestrator.errors import UserError
from orchestrator.fleet.forward import Forwarder
from orchestrator.lab.stream import listen
from tests.support import ORCH, REPO, one_line_error, orch, run_env
from tests.support.browser import browser, save_screenshot  # noqa: F401 (browser is a fixture)
from tests.support.datasets import COCO_CATEGORIES, CocoBox, write_coco
from tests.support.detectors import trained_yolov5
from tests.support.sshd import Fleet, sshd_available

pytestmark = pytest.mark.slow

# The classes listed in another order than their ids: the fixture paints each class in the palette colour of its
# place in this list, while the model's labels (and the colours the pipeline draws them in) follow the ids, so a
# drawn outline never has its object's colour and cannot be mistaken for the object's own edge.
CATEGORIES = (COCO_CATEGORIES[2], COCO_CATEGORIES[0], COCO_CATEGORIES[1])
# Every clip image holds objects (person 1, car 3, dog 18), apart from each other, at sizes the model learnt.
CLIP_OBJECTS = {5000 + index: boxes for index, boxes in enumerate([
    [CocoBox(1, 8, 10, 30, 26)], [CocoBox(3, 50, 30, 36, 28)], [CocoBox(18, 20, 20, 40, 30)],
    [CocoBox(1, 6, 6, 28, 24), CocoBox(18, 56, 38, 32, 26)], [CocoBox(3, 10, 36, 34, 28)],
    [CocoBox(18, 48, 6, 40, 30)], [CocoBox(1, 30, 24, 34, 30)], [CocoBox(3, 4, 4, 30, 24), CocoBox(1, 54, 40, 30, 26)],
])}
CLIP_SCALE = 4  # the fixture's 96x72 images shown at 384x288
CLIP_REPEAT = 3  # frames per image
RECIPE = """\
name: stream-detector
model:
  onnx: ../models/yolov5n.onnx
  preprocess: {resize: letterbox, pad_value: 114}
  detection: {decoder: yolov5, conf_threshold: 0.001, iou_threshold: 0.6, max_detections: 300}
dataset: {name: coco, root: ../data/coco, test_split: val2017, train_split: train2017, image_size: 64}
variants:
  quantize: [none]
"""
SCREENSHOT = REPO / "docs" / "images" / "stream.png"  # the README's; ORCH_UPDATE_SCREENSHOT=1 writes it again
FPS_CORNER = (130, 40)  # (x, y) bounds of the FPS the pipeline draws top-left, in frame pixels
TAG_SIZE = (120, 24)  # (width, height) bounds of a box's label tag ("person 0.62")
COLOUR_TOLERANCE = 60  # per channel, after JPEG: the outline is 3 px wide so its middle keeps its colour
WAIT_S = 60


@dataclass
class StreamLab:
    """A results database and artifact store holding one detector variant, and a clip to stream."""

    env: dict[str, str]
    variant: str
    clip: Path


@pytest.fixture(scope="module")
def stream_lab(tmp_path_factory: pytest.TempPathFactory) -> StreamLab:
    root = tmp_path_factory.mktemp("stream")
    data = root / "data" / "coco"
    write_coco(data, "train2017", n=96, seed=1, categories=CATEGORIES)
    write_coco(data, "val2017", n=len(CLIP_OBJECTS), first_id=5000, objects=CLIP_OBJECTS, categories=CATEGORIES)
    (root / "models").mkdir()
    trained_yolov5(data, root / "models" / "yolov5n.onnx", size=64, epochs=150)
    (root / "recipes").mkdir()
    (root / "recipes" / "detector.yaml").write_text(RECIPE)
    env = run_env(root)
    built = orch("build", str(root / "recipes" / "detector.yaml"), env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    return StreamLab(env, "fp32", write_clip(sorted((data / "val2017").glob("*.jpg")), root / "clip.avi"))


def write_clip(images: list[Path], path: Path) -> Path:
    """The images, enlarged, as an MJPEG AVI clip (what cv2.VideoWriter writes for a camera recorder)."""
    import cv2

    first = cv2.imread(str(images[0]))
    size = (first.shape[1] * CLIP_SCALE, first.shape[0] * CLIP_SCALE)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for image in images:
        frame = cv2.resize(cv2.imread(str(image)), size, interpolation=cv2.INTER_NEAREST)
        for _ in range(CLIP_REPEAT):
            writer.write(frame)
    writer.release()
    return path


# --------------------------------------------------------------------------- `orch stream` as a user runs it


class OrchStream:
    """A running `orch stream`: the page URL and the device's stream process it printed, and its end."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.process = subprocess.Popen([ORCH, "stream", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = int(self._line_with("streaming").split("(process ")[1].split()[0])
        self.url = self._line_with("open ").split()[1]
        self.token = self.url.split("token=")[1]
        self.port = int(urlsplit(self.url).port or 0)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _line_with(self, text: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if line is None:
                break
            self.stdout.append(line)
            if text in line:
                return line
        self.process.kill()
        raise AssertionError(f"orch stream printed no {text!r}: {''.join(self.stdout)}{self.process.stderr.read()}")

    def request(self, method: str, path: str, token: str | None = None, host: str | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request to the page, as a browser on this machine makes it."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Host": host or f"127.0.0.1:{self.port}"}
        if token is not None:
            headers["X-Orch-Token"] = token
        try:
            connection.request(method, path, headers=headers)
            answer = connection.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            connection.close()

    def stats(self) -> dict[str, Any]:
        status, _, body = self.request("GET", "/stats", self.token)
        assert status == 200, status
        return dict(json.loads(body))

    def end(self, timeout: float = WAIT_S) -> tuple[int, str, str]:
        """Wait for `orch stream` to exit: its code, the rest of its stdout, its stderr."""
        code = self.process.wait(timeout=timeout)
        rest = []
        while (line := self._lines.get(timeout=5)) is not None:
            rest.append(line)
        assert self.process.stderr is not None
        return code, "".join(self.stdout + rest), self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def open_stream(stream_lab: StreamLab, tmp_path: Path) -> Iterator[Callable[[str], OrchStream]]:
    """open_stream(device) runs `orch stream DEVICE` on the clip (a board: a real sshd on 127.0.0.2)."""
    started: list[OrchStream] = []
    fleets: list[Fleet] = []

    def start(device: str) -> OrchStream:
        env = stream_lab.env
        if device != "local":
            fleets.append(Fleet(tmp_path / "fleet", ["127.0.0.2"]))
            env = fleets[-1].env(env)
        started.append(OrchStream([device, stream_lab.variant, "--source", str(stream_lab.clip)], env))
        return started[-1]

    yield start
    for stream in started:
        stream.kill()
    for fleet in fleets:
        fleet.stop()


def listening_addresses(pid: int) -> set[str]:
    """The addresses the process's TCP sockets listen on (Linux /proc; IPv6 ones as `[hex]`)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address = fields[1].split(":")[0]
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if table == "tcp" else f"[{address}]")
    return found


def outline_distances(pixels: np.ndarray, detections: list[list[float]], which: int) -> np.ndarray:
    """How far (largest channel difference) each visible pixel of detection `which`'s outline is from its label's
    colour, the outline being the pipeline's: x1, y1, x2, y2 rounded. Not visible: the FPS drawn over the top-left
    corner, and what the better boxes (drawn later, on top) cover with their outlines and label tags."""
    x1, y1, x2, y2 = (int(round(value)) for value in detections[which][:4])
    height, width = pixels.shape[:2]
    points = [(x, y) for y in (y1, y2) for x in range(x1, x2 + 1)] + [(x, y) for x in (x1, x2) for y in range(y1, y2)]
    on_top = [[int(round(value)) for value in better[:4]] for better in detections[:which]]
    visible = [(x, y) for x, y in points if 0 <= x < width and 0 <= y < height
               and not (x < FPS_CORNER[0] and y < FPS_CORNER[1])
               and not any(covers(box, x, y) for box in on_top)]
    wanted = np.array(colour(int(detections[which][5])))
    return np.array([np.abs(pixels[y, x].astype(int) - wanted).max() for x, y in visible])


def covers(box: list[int], x: int, y: int) -> bool:
    """Whether a box drawn on top hides (x, y): its 3-px outline, or its label tag (above its top edge, or just
    below it for a box at the top of the frame)."""
    x1, y1, x2, y2 = box
    on_vertical = min(abs(x - x1), abs(x - x2)) <= 2 and y1 - 2 <= y <= y2 + 2
    on_horizontal = min(abs(y - y1), abs(y - y2)) <= 2 and x1 - 2 <= x <= x2 + 2
    in_tag = x1 - 2 <= x <= x1 + TAG_SIZE[0] and y1 - TAG_SIZE[1] <= y <= y1 + TAG_SIZE[1]
    return on_vertical or on_horizontal or in_tag


def decode_jpeg(data: bytes) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- the page in a browser


@pytest.mark.parametrize("device", ["local", pytest.param("board1", marks=pytest.mark.skipif(
    not sshd_available(), reason="needs root and OpenSSH's sshd (.ci/run installs it)"))])
def test_the_page_shows_boxes_where_the_detector_found_them_and_end_ends_the_process(
        device: str, open_stream: Callable[[str], OrchStream], browser, tmp_path: Path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    stream = open_stream(device)
    assert urlsplit(stream.url).hostname == "127.0.0.1"
    assert listening_addresses(stream.process.pid) == {"127.0.0.1"}  # the forwarder, on the loopback only
    assert listening_addresses(stream.pid) == {"127.0.0.1"}  # the device's stream process, likewise
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.5", stream.port), timeout=5)
    assert stream.token not in Path(f"/proc/{stream.pid}/cmdline").read_text()

    browser.get(f"http://127.0.0.1:{stream.port}/")  # without the token: refused, no page
    assert browser.find_elements(By.ID, "stream") == []
    browser.get(stream.url)
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda page: int(page.find_element(By.ID, "frames").text) > 0
               and len(page.find_elements(By.CSS_SELECTOR, "#stages tr")) == 6
               and page.execute_script("return document.getElementById('stream').naturalWidth") > 0)
    assert browser.execute_script("return document.getElementById('stream').naturalWidth") == 96 * CLIP_SCALE
    stages = browser.execute_script(  # in one call: the page replaces the rows at every refresh
        "return [...document.querySelectorAll('#stages tr')].map(row => row.cells[0].textContent)")
    assert stages == ["read", "preprocess", "infer", "postprocess", "draw", "encode"]
    shown = int(browser.find_element(By.ID, "frames").text)
    wait.until(lambda page: int(page.find_element(By.ID, "frames").text) > shown)  # frames keep arriving
    updating = os.environ.get("ORCH_UPDATE_SCREENSHOT") == "1" and device != "local"
    save_screenshot(browser, SCREENSHOT if updating else tmp_path / "stream.png")

    # Refused: no token, another token, the right token under another Host (a DNS-rebinding page).
    assert stream.request("GET", "/")[0] == 403
    assert stream.request("GET", urlsplit(stream.url).path + "?token=" + "0" * 64)[0] == 403
    assert stream.request("GET", "/stats", "f" * 64)[0] == 403
    refused = stream.request("GET", "/stats", stream.token, host=f"rebind.example:{stream.port}")
    assert refused[0] == 403 and refused[2] == b""
    status, headers, _ = stream.request("GET", f"/?token={stream.token}")
    assert status == 200 and "script-src 'nonce-" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"

    # Stop: the frames stop; the last one shows every box of /stats in its label's colour, where it was found.
    for _ in range(10):
        browser.find_element(By.ID, "stop").click()
        wait.until(lambda page: page.find_element(By.ID, "state").text == "stopped")
        stats = stream.stats()
        if stats["last"]["detections"]:
            break
        browser.find_element(By.ID, "start").click()
        wait.until(lambda page: page.find_element(By.ID, "state").text == "running")
    time.sleep(1.0)
    assert stream.stats()["frames"] == stats["frames"] and not stats["running"]
    status, headers, jpeg = stream.request("GET", "/frame.jpg", stream.token)
    assert status == 200 and int(headers["X-Orch-Frame"]) == stats["last"]["index"]
    pixels = decode_jpeg(jpeg)
    assert stats["last"]["detections"], "the detector trained on the fixture finds nothing in its images"
    detections = stats["last"]["detections"]
    for which, detection in enumerate(detections):
        distances = outline_distances(pixels, detections, which)
        assert len(distances) >= 20 and np.mean(distances <= COLOUR_TOLERANCE) >= 0.9, (detection, distances)

    # End: `orch stream` exits 0 and the stream's process on the device is gone.
    browser.find_element(By.ID, "end").click()
    code, stdout, stderr = stream.end()
    assert code == 0, stdout + stderr
    assert "the stream has ended" in stdout
    assert not Path(f"/proc/{stream.pid}").exists()


# --------------------------------------------------------------------------- ends and refusals


def test_ctrl_c_ends_the_stream_and_its_process(open_stream: Callable[[str], OrchStream]):
    stream = open_stream("local")
    assert stream.stats()["running"]
    stream.process.send_signal(signal.SIGINT)
    code, _, stderr = stream.end()
    assert code == 130 and "the stream of fp32 was ended by Ctrl-C" in stderr, stderr
    assert not Path(f"/proc/{stream.pid}").exists()


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera")
def test_a_camera_the_device_does_not_have_is_a_one_line_error(stream_lab: StreamLab):
    done = orch("stream", "local", stream_lab.variant, env=stream_lab.env, timeout=120)  # camera:0 by default
    one_line_error(done, "local: camera 0: not found or not readable")


@pytest.mark.parametrize(("args", "fragments"), [
    (["nowhere", "fp32"], ["unknown device 'nowhere'"]),
    (["local", "no-such-variant"], ["variant 'no-such-variant'", "not in the results database"]),
    (["local", "fp32", "--source", "missing.avi"], ["missing.avi: not an image folder, a video file"]),
])
def test_bad_input_is_a_one_line_error_naming_it(stream_lab: StreamLab, args: list[str], fragments: list[str]):
    one_line_error(orch("stream", *args, env=stream_lab.env, timeout=120), *fragments)


def test_the_forwarder_listens_on_127_0_0_1_only_and_carries_bytes_both_ways():
    upstream = socket.create_server(("127.0.0.1", 0))

    def echo_once() -> None:
        connection, _ = upstream.accept()
        with connection:
            while data := connection.recv(4096):
                connection.sendall(data)

    threading.Thread(target=echo_once, daemon=True).start()
    forwarder = Forwarder(lambda: socket.create_connection(upstream.getsockname()))
    try:
        host, port = forwarder.address
        assert host == "127.0.0.1"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.5", port), timeout=5)
        with socket.create_connection((host, port), timeout=10) as client:
            client.sendall(b"frame " * 20_000)
            client.shutdown(socket.SHUT_WR)  # half-closed: the echo still comes back, then the end
            received = b""
            while data := client.recv(1 << 16):
                received += data
        assert received == b"frame " * 20_000
        with pytest.raises(UserError, match=rf"--port {port}: cannot listen on 127.0.0.1:{port} "):
            listen(port, lambda: socket.create_connection(upstream.getsockname()))
    finally:
        forwarder.close()
        upstream.close()
