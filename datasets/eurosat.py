"""EuroSAT (Helber et al. 2019), RGB version: 10 land-use classes of Sentinel-2 tiles; the
CamelCase folder names become the readable names CoOp prompts with."""

from datasets.benchmark import ClassFolderDataset, Need
from engine.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class EuroSAT(ClassFolderDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    needs = (Need("2750/", "one folder per land-use class, from EuroSAT.zip"),)
    standard_num_classes = 10
    renamed = {
        "AnnualCrop": "Annual Crop Land",
        "Forest": "Forest",
        "HerbaceousVegetation": "Herbaceous Vegetation Land",
        "Highway": "Highway or Road",
        "Industrial": "Industrial Buildings",
        "Pasture": "Pasture Land",
        "PermanentCrop": "Permanent Crop Land",
        "Residential": "Residential Buildings",
        "River": "River",
        "SeaLake": "Sea or Lake",
    }
