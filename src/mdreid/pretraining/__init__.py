"""The proxy-foundation stage: pretrain the tiny CLIP-layout ViT on the RGB-only pool of other identities,
then hand it to fine-tuning as an open_clip visual-tower file, through the path real CLIP weights take."""
