"""The network (U-Net on a registered encoder), its input normalisation, pretrained weights and the bundle."""
