from pages.common import md


def test_md_escapes_customer_text_so_markdown_shows_literally():
    assert md("**bold** <script>x</script> [link](http://a) `code` a_b") == (
        r"\*\*bold\*\* \<script\>x\</script\> `[link](http://a)` \`code\` a\_b"  # a URL word: inline code
    )
