"""Bilingual shopping vocabulary: Chinese names of the marketplace's product kinds, synonyms and origin
words. Plain data (no tokenizer import), shared by the query parser and the synthetic generator's titles.
"""

from __future__ import annotations

#: English leaf-category name -> the Chinese name cross-border listings put first in a title.
CATEGORY_ZH = {
    "Face Serum": "精华液",
    "Face Cream": "面霜",
    "Sunscreen": "防晒霜",
    "Makeup": "彩妆",
    "Perfume": "香水",
    "Infant Formula": "婴儿奶粉",
    "Diapers": "纸尿裤",
    "Baby Care": "婴儿护理",
    "Baby Food": "辅食",
    "Vitamins": "维生素",
    "Fish Oil": "鱼油",
    "Probiotics": "益生菌",
    "Collagen": "胶原蛋白",
    "Snacks": "零食",
    "Coffee & Tea": "咖啡茶叶",
    "Dairy": "乳制品",
    "Wine": "葡萄酒",
    "Handbags": "手提包",
    "Watches": "手表",
    "Sneakers": "运动鞋",
    "Sunglasses": "太阳镜",
    "Headphones": "耳机",
    "Small Appliances": "小家电",
    "Personal Care Devices": "个护电器",
    "Kitchenware": "厨具",
    "Bedding": "床品",
    "Cleaning": "清洁用品",
    "Pet Food": "宠物粮",
    "Pet Supplies": "宠物用品",
}

#: Groups of words a shopper uses for the same thing; any member of a group matches the others.
SYNONYM_GROUPS = (
    ("面霜", "乳霜", "cream"),
    ("精华液", "精华", "serum"),
    ("防晒霜", "防晒", "sunscreen", "sunblock"),
    ("香水", "perfume", "fragrance"),
    ("彩妆", "化妆品", "makeup", "cosmetics"),
    ("奶粉", "婴儿奶粉", "formula"),
    ("纸尿裤", "尿不湿", "diapers", "nappies"),
    ("维生素", "vitamins", "vitamin"),
    ("鱼油", "fishoil"),
    ("益生菌", "probiotics"),
    ("胶原蛋白", "collagen"),
    ("零食", "snacks"),
    ("咖啡", "coffee"),
    ("茶叶", "茶", "tea"),
    ("葡萄酒", "红酒", "wine"),
    ("手提包", "包包", "handbags", "handbag", "bag"),
    ("手表", "腕表", "watches", "watch"),
    ("运动鞋", "球鞋", "sneakers", "trainers"),
    ("太阳镜", "墨镜", "sunglasses"),
    ("耳机", "headphones", "earphones"),
    ("厨具", "kitchenware", "cookware"),
    ("床品", "bedding"),
    ("宠物粮", "猫粮", "狗粮", "petfood"),
)

#: Words naming a country of origin -> ISO code (used as a filter).
ORIGIN_WORDS = {
    "日本": "JP", "japan": "JP", "japanese": "JP", "日系": "JP",
    "韩国": "KR", "korea": "KR", "korean": "KR", "韩系": "KR",
    "美国": "US", "usa": "US", "american": "US",
    "澳洲": "AU", "澳大利亚": "AU", "australia": "AU", "australian": "AU",
    "新西兰": "NZ", "zealand": "NZ",
    "德国": "DE", "germany": "DE", "german": "DE",
    "法国": "FR", "france": "FR", "french": "FR",
    "意大利": "IT", "italy": "IT", "italian": "IT",
    "英国": "GB", "britain": "GB", "british": "GB", "uk": "GB",
    "荷兰": "NL", "netherlands": "NL", "dutch": "NL",
    "瑞士": "CH", "switzerland": "CH", "swiss": "CH",
    "加拿大": "CA", "canada": "CA", "canadian": "CA",
    "泰国": "TH", "thailand": "TH", "thai": "TH",
    "西班牙": "ES", "spain": "ES", "spanish": "ES",
}  # fmt: skip

#: Origin code -> the words indexed with a product, so "日本" or "japan" also match its text.
ORIGIN_TEXT = {}
for _word, _code in ORIGIN_WORDS.items():
    ORIGIN_TEXT.setdefault(_code, []).append(_word)
