"""A tiny beauty catalogue shared by the fidelity tests (row 0 is padding)."""

TITLES = [
    "",
    "red nail polish",
    "cherry lip balm",
    "argan hair oil treatment",
    "blue eyeshadow palette",
    "dry shampoo for oily hair",
    "vitamin c face serum",
    "black mascara waterproof",
    "coconut body lotion",
]
