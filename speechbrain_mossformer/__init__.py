"""speechbrain-mossformer: MossFormer speech separation for SpeechBrain."""

__version__ = "0.1.0"
