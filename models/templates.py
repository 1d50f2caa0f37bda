"""Hand-crafted prompt templates: one per dataset, as CoOp's zero-shot baseline uses them."""

DEFAULT_TEMPLATE = "a photo of a {}."

DATASET_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

# The seven ImageNet templates selected in CLIP's prompt-engineering notebook.
IMAGENET_ENSEMBLE = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def dataset_template(dataset_name):
    """The dataset's template; datasets may also carry their own (``TEMPLATE`` attribute)."""
    return DATASET_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def ensemble_templates(own_template):
    """ImageNet's ensemble plus the dataset's own template."""
    return IMAGENET_ENSEMBLE + [own_template]
