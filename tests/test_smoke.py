from tests.factories import CAPTCHA, form_fields


def test_landing_page_names_the_authority(client):
    response = client.get("/tianjin/")
    assert response.status_code == 200
    assert "天津市通信管理局" in response.get_data(as_text=True)


def test_whole_journey(client, submit_filing, sent_codes):
    submit_filing()
    codes = sent_codes()
    for phone, id_last6, expected in [
        ("13900000001", "011239", "请等待其他核验人"),
        ("13900000002", "31002X", "已全部完成"),
    ]:
        page = client.get("/tianjin/verify").get_data(as_text=True)
        response = client.post(
            "/tianjin/verify",
            data={
                **form_fields(page),
                "captcha": CAPTCHA,
                "code": codes[phone],
                "phone": phone,
                "id_last6": id_last6,
            },
        )
        assert expected in response.get_data(as_text=True)
