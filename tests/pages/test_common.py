from pages.common import md


def test_md_escapes_customer_text_so_markdown_shows_literally():
    assert md("**bold** <script>x</script> [link](http://a) `code` a_b") == (
        r"\*\*bold\*\* \<script\>x\</script\> \[link\]\(http\:\/\/a\)".replace(r"\/", "/") + r" \`code\` a\_b"
    )
