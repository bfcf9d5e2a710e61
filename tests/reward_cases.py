r"""The case table for `mmfinereason.rewards.is_correct`: (response, gold, expected[, question]).

Grouped by answer type; every group carries its near misses (a wrong answer that looks right), because a reward
that marks a wrong answer right is as harmful as the reverse. `expected` is what a careful human grader says.
"""

from __future__ import annotations

T = "<think>Let me work through the figure step by step. Maybe it is 7? No.</think>"
MC4 = "Find the angle.\nChoices:\nA. 30°\nB. 45°\nC. 60°\nD. 90°"
MC_INLINE = "What is the area of the triangle? (A) 6 (B) 12 (C) 24 (D) 36"
MC_TEXT = "Which shape is shown?\nA: square\nB: isosceles triangle\nC: circle\nD: regular hexagon"
MC_EXPR = "Evaluate sin 60°.\nOptions: A. \\frac{1}{2} B. \\frac{\\sqrt{3}}{2} C. \\sqrt{3} D. 1"
MC_YN = "Is the line tangent to the circle?\nA. Yes\nB. No"


def wrap(answer: str) -> str:
    """MMFineReason's own format."""
    return f"{T}\nThe computation gives the value.\n\nTherefore, the final answer is <answer>{answer}</answer>."


CASES: list[tuple] = [
    # ---- extraction: where the committed answer is ------------------------------------------------------------
    (wrap("12"), "12", True),
    (f"{T}So the final answer is <answer>5</answer>, not <answer>12</answer>.", "12", True),  # the last tag
    (f"{T}So the final answer is <answer>5</answer>, not <answer>12</answer>.", "5", False),
    ("<think>The answer is 12.</think>After checking, the answer is <answer>13</answer>.", "12", False),
    ("<think>The answer is 12.</think>After checking, the answer is <answer>13</answer>.", "13", True),
    ("<think>I think \\boxed{12}</think>So \\boxed{13}", "12", False),  # boxed inside think does not count
    ("<think>I think \\boxed{12}</think>So \\boxed{13}", "13", True),
    ("Reasoning ... hence \\boxed{\\frac{1}{2}}.", "0.5", True),
    ("We get \\boxed{\\frac{\\sqrt{3}}{2}} in the end", "\\frac{\\sqrt{3}}{2}", True),
    ("First \\boxed{3}, then corrected: \\boxed{4}", "4", True),
    ("First \\boxed{3}, then corrected: \\boxed{4}", "3", False),
    ("<think>long reasoning", "12", False),  # unterminated think: no answer
    ("<think>long reasoning \\boxed{12}", "12", False),
    ("<think>a</think>b<think>c \\boxed{12}", "12", False),  # a second think never closed
    ("The reasoning is done.\nFinal Answer: 42", "42", True),
    ("So the answer is 42.", "42", True),
    ("**Final Answer**\n\n$\\boxed{42}$", "42", True),
    ("**Answer:** 42", "42", True),
    ("Thus the correct option is (C).", "C", True, MC4),
    ("reasoning continues</think>\nThe final answer is <answer>B</answer>.", "B", True, MC4),  # no opening tag
    ("<answer>12</answer>", "12", True),
    ("12", "12", True),  # a bare answer
    ("  12  ", "12", True),
    ("", "12", False),
    ("<think>x</think>", "12", False),
    ("<think>x</think><answer></answer>", "12", False),
    ("<think>x</think><answer>12", "12", False),  # unterminated answer tag
    (wrap("\\boxed{12}"), "12", True),  # boxed inside the answer tag
    (wrap("$12$"), "12", True),
    (wrap("\\(12\\)"), "12", True),
    (wrap("**12**"), "12", True),
    # ---- integers and decimals ----------------------------------------------------------------------------------
    (wrap("12"), "1.2", False),
    (wrap("1.2"), "12", False),
    (wrap("12.0"), "12", True),
    (wrap("12"), "12.00", True),
    (wrap("-3"), "3", False),
    (wrap("−3"), "-3", True),  # unicode minus
    (wrap("0.5"), "0.05", False),
    (wrap("0.50"), "0.5", True),
    (wrap(".5"), "0.5", True),
    (wrap("120"), "12", False),
    (wrap("13"), "12", False),
    (wrap("11.99"), "12", False),
    (wrap("1,000"), "1000", True),
    (wrap("1000"), "1,000", True),
    (wrap("12,345.6"), "12345.6", True),
    (wrap("1 000"), "1000", True),  # SI-style thousands separator
    (wrap("100"), "1000", False),
    (wrap("10001"), "10000", False),  # integers compare exactly, whatever the tolerance
    (wrap("3.14159"), "3.1416", True),
    (wrap("3.1416"), "3.14", True),  # a more precise answer that rounds to the gold
    (wrap("3.14"), "3.1416", True),
    (wrap("3.15"), "3.1416", False),
    (wrap("0.46"), "0.5", False),  # a one-digit gold is not a rounding of 0.46
    (wrap("1.24"), "1.2", True),
    (wrap("1.3"), "1.2", False),
    (wrap("0.333"), "1/3", True),
    (wrap("0.3"), "1/3", False),
    (wrap("approximately 7.07"), "7.07", True),
    (wrap("≈ 7.07"), "7.07", True),
    (wrap("3"), "three", True),
    (wrap("three"), "3", True),
    (wrap("four"), "3", False),
    # ---- fractions, percentages, scientific notation --------------------------------------------------------
    (wrap("\\frac{1}{2}"), "0.5", True),
    (wrap("\\dfrac{3}{4}"), "0.75", True),
    (wrap("3/4"), "\\frac{3}{4}", True),
    (wrap("4/3"), "\\frac{3}{4}", False),
    (wrap("-\\frac{1}{2}"), "-0.5", True),
    (wrap("\\frac{1}{2}"), "-0.5", False),
    (wrap("2\\frac{1}{2}"), "2.5", True),
    (wrap("5/2"), "2\\frac{1}{2}", True),
    (wrap("\\frac{6}{8}"), "\\frac{3}{4}", True),
    (wrap("45%"), "45%", True),
    (wrap("45\\%"), "45%", True),
    (wrap("0.45"), "45%", True),
    (wrap("45"), "45%", True),
    (wrap("4.5%"), "45%", False),
    (wrap("45%"), "0.45", True),
    (wrap("0.45"), "45", False),
    (wrap("2.5e-3"), "0.0025", True),
    (wrap("2.5 \\times 10^{-3}"), "0.0025", True),
    (wrap("2.5 × 10^-3"), "2.5e-3", True),
    (wrap("2.5 \\times 10^{-4}"), "0.0025", False),
    (wrap("3 \\times 10^{8}"), "300000000", True),
    (wrap("1.5 \\cdot 10^{3}"), "1500", True),
    # ---- units -------------------------------------------------------------------------------------------------
    (wrap("12 cm"), "12", True),
    (wrap("12\\text{ cm}"), "12", True),
    (wrap("12\\,\\mathrm{cm}"), "12 cm", True),
    (wrap("12 cm²"), "12", True),
    (wrap("12 \\text{cm}^2"), "12", True),
    (wrap("12 m^2"), "12 m²", True),
    (wrap("13 cm"), "12 cm", False),
    (wrap("30°"), "30", True),
    (wrap("30^\\circ"), "30°", True),
    (wrap("30^{\\circ}"), "30", True),
    (wrap("30 degrees"), "30°", True),
    (wrap("30\\degree"), "30", True),
    (wrap("30°"), "60°", False),
    (wrap("60°"), "30°", False),
    (wrap("\\frac{\\pi}{6}"), "30°", True),  # radians for a degree gold
    (wrap("\\frac{\\pi}{3}"), "30°", False),
    (wrap("$5.20"), "5.2", True),
    (wrap("\\$5.20"), "5.20", True),
    (wrap("$5.30"), "5.2", False),
    (wrap("5 m/s"), "5", True),
    (wrap("9.8 m/s^2"), "9.8", True),
    (wrap("7 apples"), "7", True),
    (wrap("4 square units"), "4", True),
    (wrap("5x"), "5", False),  # a variable is not a unit
    (wrap("5 and 6"), "5", False),
    # ---- expressions through math-verify ------------------------------------------------------------------
    (wrap("2\\sqrt{3}"), "\\sqrt{12}", True),
    (wrap("\\sqrt{12}"), "2\\sqrt{3}", True),
    (wrap("3\\sqrt{2}"), "2\\sqrt{3}", False),
    (wrap("\\pi/2"), "\\frac{\\pi}{2}", True),
    (wrap("\\frac{\\pi}{2}"), "\\frac{\\pi}{4}", False),
    (wrap("2\\pi"), "2\\pi", True),
    (wrap("6.28"), "2\\pi", True),  # a rounded value of a closed form
    (wrap("6.2"), "2\\pi", False),
    (wrap("3.46"), "2\\sqrt{3}", True),
    (wrap("2\\sqrt{3}"), "3.46", True),
    (wrap("2\\sqrt{3}"), "3.5", False),
    (wrap("\\frac{\\sqrt{3}}{2}"), "\\frac{1}{2}\\sqrt{3}", True),
    (wrap("\\frac{\\sqrt{3}}{3}"), "\\frac{1}{\\sqrt{3}}", True),
    (wrap("\\frac{\\sqrt{2}}{2}"), "\\frac{\\sqrt{3}}{2}", False),
    (wrap("x=3"), "3", True),
    (wrap("x = 3"), "3", True),
    (wrap("x=-3"), "3", False),
    (wrap("3"), "x=3", True),
    (wrap("x=3"), "x=-3", False),
    (wrap("AB = 5"), "5", True),
    (wrap("AB = 2\\sqrt{3}"), "2\\sqrt{3}", True),
    (wrap("x^2+2x+1"), "(x+1)^2", True),
    (wrap("x^2+2x-1"), "(x+1)^2", False),
    (wrap("2x+1"), "1+2x", True),
    (wrap("y = 2x + 1"), "y=2x+1", True),
    (wrap("y = 2x - 1"), "y=2x+1", False),
    (wrap("(1, 2]"), "(1,2]", True),
    (wrap("[1, 2]"), "(1,2]", False),
    (wrap("(-\\infty, 3)"), "(-\\infty,3)", True),
    (wrap("\\{1, 2\\}"), "\\{2, 1\\}", True),
    (wrap("\\{1, 3\\}"), "\\{2, 1\\}", False),
    (wrap("(2, 3)"), "(2,3)", True),
    (wrap("(3, 2)"), "(2,3)", False),
    (wrap("(2, -3)"), "(2,3)", False),
    (wrap("\\left(2, 3\\right)"), "(2, 3)", True),
    (wrap("(0.5, 1)"), "(\\frac{1}{2}, 1)", True),
    (wrap("a^2 + b^2"), "b^2 + a^2", True),
    (wrap("\\frac{a+b}{2}"), "\\frac{a}{2}+\\frac{b}{2}", True),
    (wrap("\\sin^2 x + \\cos^2 x"), "1", True),
    (wrap("10^{-5}"), "0.00001", True),
    (wrap("2^{10}"), "1024", True),
    (wrap("e^{2}"), "e^2", True),
    # ---- multiple choice ------------------------------------------------------------------------------------
    (wrap("B"), "B", True, MC4),
    (wrap("(B)"), "B", True, MC4),
    (wrap("B."), "B", True, MC4),
    (wrap("B)"), "B", True, MC4),
    (wrap("Option B"), "B", True, MC4),
    (wrap("option (B)"), "B", True, MC4),
    (wrap("B: 45°"), "B", True, MC4),
    (wrap("B. 45°"), "B", True, MC4),
    (wrap("(B) 45°"), "B", True, MC4),
    (wrap("\\text{B}"), "B", True, MC4),
    (wrap("\\text{(B)}"), "B", True, MC4),
    (wrap("b"), "B", True, MC4),
    (wrap("45°"), "B", True, MC4),  # the option text itself
    (wrap("45"), "B", True, MC4),
    (wrap("60°"), "B", False, MC4),
    (wrap("C"), "B", False, MC4),
    (wrap("BC"), "B", False, MC4),
    (wrap("B, C"), "B", False, MC4),
    (wrap("B or C"), "B", False, MC4),
    (wrap("A"), "(A)", True, MC4),
    (wrap("A."), "A", True),
    (wrap("A triangle"), "A", False),  # not a letter answer
    (wrap("C"), "C", True, MC_INLINE),
    (wrap("24"), "C", True, MC_INLINE),
    (wrap("12"), "C", False, MC_INLINE),
    (wrap("isosceles triangle"), "B", True, MC_TEXT),
    (wrap("An isosceles triangle."), "B", True, MC_TEXT),
    (wrap("circle"), "B", False, MC_TEXT),
    (wrap("\\frac{\\sqrt{3}}{2}"), "B", True, MC_EXPR),
    (wrap("\\frac{1}{2}"), "B", False, MC_EXPR),
    (wrap("B"), "45°", True, MC4),  # gold given as option text, answer as the letter
    (wrap("A"), "45°", False, MC4),
    (wrap("A"), "Yes", True, MC_YN),
    (wrap("B"), "Yes", False, MC_YN),
    # multi-select / several letters
    (wrap("BC"), "BC", True),
    (wrap("B, C"), "BC", True),
    (wrap("C, B"), "BC", True),
    (wrap("B and C"), "B, C", True),
    (wrap("B"), "BC", False),
    (wrap("BCD"), "BC", False),
    (wrap("A, C"), "B, C", False),
    # ---- yes / no / true / false ------------------------------------------------------------------------------
    (wrap("Yes"), "yes", True),
    (wrap("yes."), "Yes", True),
    (wrap("Yes, the line is tangent."), "Yes", True),
    (wrap("No"), "Yes", False),
    (wrap("no"), "No", True),
    (wrap("Yes"), "No", False),
    (wrap("True"), "true", True),
    (wrap("False"), "True", False),
    (wrap("True"), "Yes", True),
    (wrap("\\text{No}"), "no", True),
    (wrap("Not sure"), "No", False),
    # ---- short text ------------------------------------------------------------------------------------------
    (wrap("Red"), "red", True),
    (wrap("the red car"), "Red car", True),
    (wrap("\\text{isosceles triangle}"), "isosceles triangle", True),
    (wrap("Isosceles triangle."), "isosceles triangle", True),
    (wrap("equilateral triangle"), "isosceles triangle", False),
    (wrap("blue"), "red", False),
    (wrap("Thursday"), "Thursday", True),
    (wrap("Tuesday"), "Thursday", False),
    (wrap("north-east"), "north east", True),
    (wrap("ba"), "ab", False),  # words are not products of symbols
    (wrap("parallel"), "perpendicular", False),
    # ---- several answers, any order ----------------------------------------------------------------------------
    (wrap("2, 3"), "2, 3", True),
    (wrap("3, 2"), "2, 3", True),
    (wrap("x = 2 or x = 3"), "2, 3", True),
    (wrap("x_1 = 3, x_2 = 2"), "2, 3", True),
    (wrap("2 and 3"), "2; 3", True),
    (wrap("\\{2, 3\\}"), "2, 3", True),
    (wrap("2"), "2, 3", False),
    (wrap("2, 3, 4"), "2, 3", False),
    (wrap("2, -3"), "2, 3", False),
    (wrap("\\frac{1}{2}, 3"), "3, 0.5", True),
    (wrap("x=2, y=3"), "x=2, y=3", True),
    (wrap("y=3, x=2"), "x=2, y=3", True),
    (wrap("x=3, y=2"), "x=2, y=3", False),
    (wrap("red, blue"), "blue, red", True),
    (wrap("red, green"), "blue, red", False),
]

# ---- issue 13: answer forms from public grader suites (written by us, one per form, with near misses) ----------
PM = "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}"
LONG = "We add the pieces one by one and check every step against the figure before writing anything down. " * 3
CASES += [
    # matrices: one matrix in any environment, read entry by entry; never compared as text
    (wrap("\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}"), PM, True),
    (wrap("\\left[\\begin{array}{cc}1 & 2 \\\\ 3 & 4\\end{array}\\right]"), PM, True),
    (wrap("\\begin{pmatrix}\\frac{1}{2} & 2 \\\\ 3 & 4\\end{pmatrix}"), PM.replace("1 &", "0.5 &"), True),
    (wrap("\\begin{bmatrix}1 & 2 \\\\ 3 & 5\\end{bmatrix}"), PM, False),
    (wrap("\\begin{pmatrix}1 & 3 \\\\ 2 & 4\\end{pmatrix}"), PM, False),  # transposed
    (wrap("\\begin{pmatrix}1 & 2 & 3 & 4\\end{pmatrix}"), PM, False),  # another shape
    (wrap("-2"), "\\begin{vmatrix}1 & 2 \\\\ 3 & 4\\end{vmatrix} = -2", True),  # a determinant is a number
    (wrap("2"), "\\begin{vmatrix}1 & 2 \\\\ 3 & 4\\end{vmatrix} = -2", False),
    # boxed and free-text predictions
    ("Therefore $x \\geq 5$ is the solution.", "x >= 5", True),
    ("Therefore $x \\leq 5$ is the solution.", "x >= 5", False),
    (LONG + "So she keeps 42 apples at the end of the day.", "42", True),
    (LONG + "So she keeps 41 apples at the end of the day.", "42", False),
    (LONG + "The matrix is $\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}$.", PM, True),
    # the MATH / Minerva ending
    ("So $x = 3/4$.\nFinal Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "0.75", True),
    ("So $x = 4/3$.\nFinal Answer: The final answer is $\\frac{4}{3}$. I hope it is correct.", "0.75", False),
    ("Interest $\\boxed{255}$, so $10,455 in all. Final Answer: The final answer is $10,455$. I hope it is correct.",
     "10455", True),
    ("Interest $\\boxed{255}$, so $10,455 in all. Final Answer: The final answer is $10,455$. I hope it is correct.",
     "255", False),  # the box was an intermediate result
    # several boxes that together form the answer
    ("The solutions are \\boxed{(1, 2)}, \\boxed{(2, 1)}.", "(2,1),(1,2)", True),
    ("The solutions are \\boxed{(1, 2)}, \\boxed{(2, 2)}.", "(2,1),(1,2)", False),
    ("The solution is \\boxed{(1, 2)}.", "(2,1),(1,2)", False),
    ("\\boxed{2} \\text{ and } \\boxed{3}", "2, 3", True),
    ("First \\boxed{3}, then corrected: \\boxed{4}", "3, 4", False),  # words between: only the last counts
    # letters with punctuation, quotes, justification; golds written as letter + option text
    ("Answer: B, which matches the figure.", "B", True, MC4),
    ('Answer: "C"', "C", True, MC4),
    ("So the answer is for sure D.", "D", True, MC4),
    ("ANSWER: B because A is wrong", "B", True, MC4),
    ("ANSWER: A because B is wrong", "B", False, MC4),
    ("ANSWER: A and B", "B", False, MC4),
    ("ANSWER: A and B", "A, B", True),
    ("ANSWER: [LETTER]", "B", False, MC4),  # an echoed template placeholder is no answer
    ("The answer is D.", "(D) Alina", True),
    ("The answer is Alina.", "(D) Alina", True),
    ("The answer is (C).", "(D) Alina", False),
    ("The answer is Bob.", "(D) Alina", False),
    # equations whose left side names the quantity
    (wrap("\\frac{1}{\\sqrt{6}}"), "\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}", True),
    (wrap("\\frac{1}{\\sqrt{5}}"), "\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}", False),
    (wrap("1"), "|AB| = 1", True),
    (wrap("2"), "|AB| = 1", False),
    (wrap("1"), "2x + z = 1", False),  # an equation, not a named value
    (wrap("11a+c"), "7 = 11a+c", False),
    (wrap("x = 5+5+1 = 11"), "x = 11", True),
    (wrap("x = 5+5 = 10"), "x = 11", False),
    # text units, percent words, a trailing backslash, thousands groups
    (wrap("125\\textnormal{ miles}"), "125", True),
    (wrap("126\\textnormal{ miles}"), "125", False),
    (wrap("28 percent"), "28\\%", True),
    (wrap("27 percent"), "28\\%", False),
    (wrap("12\\\\"), "12", True),
    (wrap("13\\"), "12", False),
    (wrap("14{,}916"), "14916", True),
    (wrap("32, 349"), "32349", False),  # a comma and a space: a list, not a thousands group
    # answer phrases in other languages
    ("La réponse est 12.", "12", True),
    ("La réponse est 13.", "12", False),
    ("所以答案是 12。", "12", True),
    ("答案：B", "B", True, MC4),
    ("答案：C", "B", False, MC4),
    ("الإجابة هي 12", "12", True),
    ("الإجابة هي 21", "12", False),
    ("उत्तर है 12", "12", True),
    ("उत्तर है 21", "12", False),
    ("Die Antwort ist 7.", "7", True),
    ("La respuesta es 7.", "8", False),
    # hedges: prose that offers alternatives is never read for an answer
    ("It is either 12 or 13.", "13", False),
    ("The answer is 12 or 13.", "12", False),
    ("The answer is not 12, it is 13.", "12", False),
    (LONG + "I could not decide between 12 and 13.", "13", False),
    # a base model that runs past its end-of-turn token
    ("The answer is 7. <|im_start|>user\nThe answer is 8.", "7", True),
    ("The answer is 7. <|im_start|>user\nThe answer is 8.", "8", False),
    # decimal comma (default: auto, see mmfinereason/rewards/conventions.py)
    (wrap("1,22"), "1.22", True),
    (wrap("1,220"), "1.22", False),  # three digits after the comma: a thousands group
    (wrap("0, 1"), "0,1", True),  # a list against a list
]

# Hostile completions: each must come back False, within the hard limit, without leaving a process behind.
ADVERSARIAL: dict[str, str] = {
    "nested_braces_1e5": "\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}",
    "unbalanced_braces_1e5": "</think>\\boxed{" + "{" * 100_000,
    "megabyte_of_digits": "<answer>" + "9" * 1_000_000 + "</answer>",
    "megabyte_bare_digits": "9" * 1_000_000,
    "frac_bomb_nested": "<answer>" + "\\frac{" * 20 + "1" + "}{2}" * 20 + "</answer>",
    "frac_bomb_wide": "<answer>" + "+".join(f"\\frac{{{i}}}{{{i + 1}}}" for i in range(60)) + "</answer>",
    "power_tower": "<answer>9^{9^{9^{9}}}</answer>",
    "power_tower_boxed": "\\boxed{9^{9^{9}}}",
    "huge_power": "<answer>2^{999999}</answer>",
    "huge_factorial": "<answer>(10^{10})!</answer>",
    "unicode_junk": "<answer>" + "\u202e\u0000\ufffd𝔘𝔫𝔦\u200b" * 100 + "</answer>",
    "unterminated_think": "<think>" + "reasoning " * 50_000,
    "unterminated_answer": "</think><answer>" + "1" * 100_000,
    "many_answer_tags": "</think>" + "<answer>" * 100_000,
    "many_boxes": "\\boxed{" * 50_000,
    "long_response_3mb": "word " * 600_000 + "<answer>" + "x" * 5000 + "</answer>",
    "regex_bait_spaces": "Answer:" + " " * 100_000 + "\n" * 3,
}
