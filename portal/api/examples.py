"""An example body of each filing type, for the OpenAPI document (tests submit every one).

The people are made up; their resident ID numbers carry valid GB 11643 check characters.
"""

from portal.models import FilingType

_ENTITY = {
    "name": "示例科技有限公司",
    "principal": {
        "name": "张三",
        "phone": "13800000001",
        "id_type": "resident_id",
        "id_number": "110105198001010016",
    },
}


def _website(domain: str, name: str, person: str, phone: str, id_type: str, id_number: str):
    principal = {"name": person, "phone": phone, "id_type": id_type, "id_number": id_number}
    return {"domain": domain, "name": name, "principal": principal}


_SHOP = _website(
    "shop.example.cn", "示例商城", "李四", "13800000002", "resident_id", "310115198506150022"
)
_BLOG = _website("blog.example.cn", "示例博客", "王五", "13800000003", "passport", "E12345678")


# Per type: what the example shows, and the parts of its body.
_BODIES = {
    FilingType.NEW_FILING: (
        "新增备案: the entity principal and every website principal are checked",
        {"entity": _ENTITY, "websites": [_SHOP, _BLOG]},
    ),
    FilingType.NEW_WEBSITE: (
        "新增网站: the principal of each new website is checked",
        {"websites": [_BLOG]},
    ),
    FilingType.NEW_ACCESS: (
        "接入备案: each website's principal is checked and must match the phone on record",
        {"websites": [_SHOP]},
    ),
    FilingType.CHANGE_FILING: (
        "变更备案: change_scope (entity, website or both) names whose principals are checked",
        {"change_scope": "entity", "entity": _ENTITY},
    ),
    FilingType.CANCEL_FILING: (
        "注销备案: not checked for now; the filing goes straight to review",
        {"entity": _ENTITY},
    ),
    FilingType.CANCEL_WEBSITE: ("注销网站: not checked for now", {"websites": [_BLOG]}),
    FilingType.CANCEL_ACCESS: ("取消接入: not checked for now", {"websites": [_SHOP]}),
}

# OpenAPI example objects, named by filing type.
EXAMPLES = {
    filing_type.value: {
        "summary": summary,
        "value": {
            "province": "tianjin",
            "type": filing_type.value,
            "reference": f"ORDER-{number}",
            **parts,
        },
    }
    for number, (filing_type, (summary, parts)) in enumerate(_BODIES.items(), start=1001)
}
