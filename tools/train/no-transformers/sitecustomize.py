"""First on PYTHONPATH for gpu-dit.sh on an image whose transformers (5.x) and peft need huggingface_hub 1.x,
beside a carried diffusers 0.32.2 and huggingface_hub 0.36: diffusers imports both when they are installed and
then fails on the hub's version. The DiT stage uses neither, so they are hidden: importlib.util.find_spec gives
None for a name whose sys.modules entry is None, which diffusers reads as not installed."""
import sys

sys.modules["transformers"] = None
sys.modules["peft"] = None
