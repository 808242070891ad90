"""``python -m mdreid.pretrain``: the proxy-foundation stage. Pretrain the tiny CLIP-layout ViT on the RGB-only
pool of other identities (pool_data, contrastive), then hand it to fine-tuning as an open_clip visual-tower
file, through the path real CLIP weights take; zero_shot scores a tower alone. cli is the entry point."""
