"""Fixed vocabularies of the synthetic marketplace: the category tree, origins, regions, segments, names.

Kept as plain data so every scale shares one catalogue shape and tests can reason about it.
"""

from __future__ import annotations

# (root id, root name, default VAT, leaves); leaf = (name, consumption tax, commission, repurchasable,
# median price CNY, log-price sigma, repurchase cycle days)
CATEGORY_TREE = (
    ("C01", "Beauty & Skincare", 0.13, (
        ("Face Serum", 0.0, 0.05, True, 380.0, 0.5, 45),
        ("Face Cream", 0.0, 0.05, True, 320.0, 0.5, 50),
        ("Sunscreen", 0.0, 0.05, True, 160.0, 0.4, 40),
        ("Makeup", 0.15, 0.06, False, 260.0, 0.6, 90),
        ("Perfume", 0.15, 0.06, False, 780.0, 0.5, 150),
    )),
    ("C02", "Mother & Baby", 0.13, (
        ("Infant Formula", 0.0, 0.03, True, 260.0, 0.3, 20),
        ("Diapers", 0.0, 0.03, True, 150.0, 0.3, 18),
        ("Baby Care", 0.0, 0.04, True, 120.0, 0.5, 40),
        ("Baby Food", 0.0, 0.04, True, 90.0, 0.4, 25),
    )),
    ("C03", "Health & Supplements", 0.13, (
        ("Vitamins", 0.0, 0.05, True, 200.0, 0.5, 35),
        ("Fish Oil", 0.0, 0.05, True, 230.0, 0.4, 40),
        ("Probiotics", 0.0, 0.05, True, 260.0, 0.4, 30),
        ("Collagen", 0.0, 0.05, True, 320.0, 0.5, 35),
    )),
    ("C04", "Food & Grocery", 0.09, (
        ("Snacks", 0.0, 0.04, True, 60.0, 0.5, 20),
        ("Coffee & Tea", 0.0, 0.04, True, 120.0, 0.5, 30),
        ("Dairy", 0.0, 0.03, True, 90.0, 0.4, 15),
        ("Wine", 0.1, 0.05, False, 280.0, 0.7, 90),
    )),
    ("C05", "Fashion & Accessories", 0.13, (
        ("Handbags", 0.0, 0.08, False, 2600.0, 0.6, 365),
        ("Watches", 0.0, 0.07, False, 1800.0, 0.8, 365),
        ("Sneakers", 0.0, 0.06, False, 900.0, 0.4, 180),
        ("Sunglasses", 0.0, 0.06, False, 1200.0, 0.5, 365),
    )),
    ("C06", "Electronics", 0.13, (
        ("Headphones", 0.0, 0.03, False, 1200.0, 0.6, 365),
        ("Small Appliances", 0.0, 0.03, False, 800.0, 0.6, 365),
        ("Personal Care Devices", 0.0, 0.04, False, 600.0, 0.6, 365),
    )),
    ("C07", "Home & Living", 0.13, (
        ("Kitchenware", 0.0, 0.05, False, 300.0, 0.6, 180),
        ("Bedding", 0.0, 0.05, False, 500.0, 0.5, 365),
        ("Cleaning", 0.0, 0.04, True, 80.0, 0.4, 30),
    )),
    ("C08", "Pets", 0.13, (
        ("Pet Food", 0.0, 0.04, True, 300.0, 0.4, 30),
        ("Pet Supplies", 0.0, 0.05, False, 150.0, 0.6, 120),
    )),
)  # fmt: skip

ORIGINS = ("JP", "KR", "US", "AU", "NZ", "DE", "FR", "IT", "GB", "NL", "CH", "CA", "TH", "ES")

# Where a root category's brands come from (weights over ORIGINS, order as above).
ROOT_ORIGIN_WEIGHTS = {
    "C01": (6, 6, 3, 1, 0, 1, 5, 1, 1, 0, 1, 0, 1, 1),
    "C02": (4, 1, 1, 4, 4, 4, 1, 0, 1, 5, 1, 0, 0, 0),
    "C03": (2, 1, 6, 6, 4, 3, 0, 0, 1, 0, 1, 2, 0, 0),
    "C04": (5, 5, 2, 2, 2, 1, 3, 3, 1, 0, 1, 0, 3, 3),
    "C05": (1, 1, 3, 1, 0, 1, 4, 6, 3, 0, 2, 0, 0, 2),
    "C06": (6, 3, 4, 0, 0, 4, 0, 0, 1, 1, 1, 0, 0, 0),
    "C07": (5, 2, 2, 1, 0, 5, 1, 1, 2, 1, 1, 0, 0, 1),
    "C08": (1, 0, 5, 2, 4, 1, 1, 0, 1, 0, 0, 4, 0, 0),
}

# Segment -> (share of shoppers, root-category prior weights C01..C08, price-sensitivity Beta(a, b)).
SEGMENTS = {
    "young_parent": (0.18, (1, 8, 2, 2, 0.5, 0.5, 1, 0.5), (3.0, 2.5)),
    "beauty_enthusiast": (0.20, (8, 0.5, 2, 1, 2, 0.5, 0.5, 0.3), (2.5, 3.0)),
    "health_conscious": (0.14, (1, 1, 8, 3, 0.5, 0.5, 1, 0.5), (2.5, 2.5)),
    "foodie": (0.12, (1, 1, 1, 8, 0.5, 0.5, 2, 0.5), (3.0, 2.5)),
    "premium": (0.08, (3, 1, 1, 1, 6, 3, 2, 0.5), (1.2, 5.0)),
    "value_seeker": (0.14, (2, 2, 2, 3, 0.5, 1, 2, 1), (5.0, 1.5)),
    "tech_fan": (0.08, (0.5, 0.3, 0.5, 1, 1, 8, 2, 0.3), (2.0, 3.0)),
    "pet_owner": (0.06, (1, 0.3, 1, 1, 0.5, 0.5, 2, 8), (2.5, 2.5)),
}

# Province-level region -> a district code (first six digits of a resident ID number).
REGIONS = {
    "Guangdong": ("440305", 0.14), "Zhejiang": ("330106", 0.11), "Jiangsu": ("320102", 0.10),
    "Shanghai": ("310101", 0.10), "Beijing": ("110101", 0.09), "Shandong": ("370102", 0.07),
    "Sichuan": ("510104", 0.07), "Fujian": ("350102", 0.06), "Hubei": ("420102", 0.05),
    "Henan": ("410102", 0.05), "Hunan": ("430102", 0.04), "Tianjin": ("120101", 0.03),
    "Chongqing": ("500101", 0.03), "Shaanxi": ("610102", 0.03), "Liaoning": ("210102", 0.03),
}  # fmt: skip

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
GIVEN_CHARS = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红玲芬燕彬宇浩凯晨欣怡涵梓轩雨萱婷博文"

# Syllables for invented brand names (romanised, pronounceable, clearly fictional).
BRAND_SYLLABLES = (
    "ka", "ri", "so", "mi", "lu", "ne", "ta", "vo", "ze", "ra", "an", "el", "or", "is", "ko", "ma",
    "be", "la", "no", "fi", "sa", "to", "yu", "den", "mar", "lin", "ven", "sol", "ber", "tas",
)  # fmt: skip
