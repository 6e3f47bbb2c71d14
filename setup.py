"""Installs speechbrain-mossformer (MossFormer speech separation for SpeechBrain)."""

from setuptools import find_packages, setup

setup(
    name="speechbrain-mossformer",
    version="0.1.0",
    description=(
        "MossFormer (ICASSP 2023) speech separation as SpeechBrain "
        "components, recipes and pretrained interface"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["speechbrain_mossformer*"]),
    install_requires=[
        "speechbrain>=1.1",
        "torch",
        "torchaudio",
        "hyperpyyaml",
        "numpy",
        "soundfile",
    ],
    extras_require={
        "dev": ["pytest", "mir_eval"],
        "onnx": ["onnx", "onnxruntime"],
        "plot": ["matplotlib"],
    },
    entry_points={
        "console_scripts": [
            "mossformer-separate=speechbrain_mossformer.cli:main",
        ]
    },
)
