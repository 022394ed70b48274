from gen_train_a import U, S, M, add, many
cg = "code_generation"
STUBS = [
 ("def count_islands(grid: list[list[int]]) -> int", "Count the groups of horizontally or vertically connected 1s in a grid of 0s and 1s.", ["count_islands([[1, 0], [0, 1]])", "2"]),
 ("def is_palindrome_number(n: int) -> bool", "Return True if the decimal digits of n read the same backwards. Negative numbers are never palindromes.", ["is_palindrome_number(121)", "True", "is_palindrome_number(-7)", "False"]),
 ("def flatten(nested: list) -> list", "Flatten an arbitrarily nested list of integers into a single list, preserving order.", ["flatten([1, [2, [3, 4]], 5])", "[1, 2, 3, 4, 5]"]),
 ("def longest_word(sentence: str) -> str", "Return the longest word in sentence; if several have the same length return the first one.", ["longest_word('a quick brown fox')", "'quick'"]),
 ("def sum_of_squares_odd(nums: List[int]) -> int", "Return the sum of the squares of the odd numbers in the list. Return 0 for an empty list.", ["sum_of_squares_odd([1, 2, 3])", "10"]),
 ("def capitalize_words(s: str) -> str", "Capitalize the first letter of every word separated by single spaces.", ["capitalize_words('hello big world')", "'Hello Big World'"]),
 ("def gcd_list(values: List[int]) -> int", "Return the greatest common divisor of all numbers in values.", ["gcd_list([12, 18, 24])", "6"]),
 ("def unique_in_order(seq)", "Return a list of items without any elements with the same value next to each other, preserving the original order.", ["unique_in_order('AAAABBBCCDAABBB')", "['A', 'B', 'C', 'D', 'A', 'B']"]),
 ("def count_upper_vowels(s)", "Given a string s, count the number of uppercase vowels at even indices.", ["count_upper_vowels('aBCdEf')", "1"]),
 ("def triangle_type(a: float, b: float, c: float) -> str", "Return 'equilateral', 'isosceles', 'scalene' or 'invalid' for the given side lengths.", ["triangle_type(3, 3, 3)", "'equilateral'", "triangle_type(1, 2, 5)", "'invalid'"]),
 ("def max_subarray_sum(arr: List[int]) -> int", "Return the largest sum of any non-empty contiguous subarray of arr.", ["max_subarray_sum([-2, 1, -3, 4, -1, 2, 1, -5, 4])", "6"]),
 ("def parse_duration(text: str) -> int", "Parse strings like '1h30m' or '45s' and return the total number of seconds.", ["parse_duration('1h30m')", "5400"]),
 ("def is_anagram(a: str, b: str) -> bool", "Check whether two words are anagrams of each other, ignoring case and spaces.", ["is_anagram('Listen', 'Silent')", "True"]),
 ("def fizzbuzz_count(n: int) -> int", "Return how many numbers from 1 to n inclusive are divisible by 3 or 5 but not both.", ["fizzbuzz_count(15)", "6"]),
 ("def strange_sort(lst)", "Return the list sorted in alternating order: smallest, largest, next smallest, next largest and so on.", ["strange_sort([1, 2, 3, 4])", "[1, 4, 2, 3]"]),
 ("def binary_gap(n: int) -> int", "Return the length of the longest sequence of zeros surrounded by ones in the binary representation of n.", ["binary_gap(9)", "2"]),
 ("def make_acronym(phrase: str) -> str", "Build an acronym from the first letter of each word, upper-cased.", ["make_acronym('portable network graphics')", "'PNG'"]),
 ("def closest_to_zero(temps: List[float]) -> float", "Return the temperature closest to zero; prefer the positive one on ties; return 0 for an empty list.", ["closest_to_zero([7, -10, 13, 8, 4, -7.2, -12, -3.7, 3.5, -9.6, 6.5, -1.7, -6.2, 7])", "-1.7"]),
 ("def words_to_number(words: str) -> int", "Convert an English number written in words up to 'nine hundred ninety nine' into an int.", ["words_to_number('two hundred forty one')", "241"]),
 ("def valid_ipv4(address: str) -> bool", "Return True if address is a valid dotted-decimal IPv4 address without leading zeros.", ["valid_ipv4('192.168.0.1')", "True", "valid_ipv4('256.1.1.1')", "False"]),
]
for i, (sig, doc, ex) in enumerate(STUBS):
    pre = "from typing import List\n\n\n" if "List[" in sig else ""
    if i % 3 == 0:
        body = f'{pre}{sig}:\n    """{doc}\n'
        for j in range(0, len(ex), 2):
            body += f"    >>> {ex[j]}\n    {ex[j+1]}\n"
        body += '    """\n'
    elif i % 3 == 1:
        body = f'{pre}{sig}:\n    """\n    {doc}\n\n    Examples:\n'
        for j in range(0, len(ex), 2):
            body += f"    {ex[j]} == {ex[j+1]}\n"
        body += '    """\n'
    else:
        body = f"{pre}{sig}:\n    '''{doc}\n    For example:\n"
        for j in range(0, len(ex), 2):
            body += f"    {ex[j]} -> {ex[j+1]}\n"
        body += "    '''\n"
    if i % 5 == 4:
        body = "Complete the following function.\n\n" + body
    add(cg, U(body))
# stubs in other languages
add(cg, U("/**\n * Returns the number of days between two dates given as 'YYYY-MM-DD' strings.\n * daysBetween('2024-01-01', '2024-03-01') === 60\n */\nfunction daysBetween(a, b) {\n"))
add(cg, U("// Return true if the slice contains any duplicate value.\n// containsDuplicate([]int{1, 2, 3, 1}) == true\nfunc containsDuplicate(nums []int) bool {\n"))
add(cg, U("/// Returns the running average of the values.\n/// running_mean(&[2.0, 4.0, 6.0]) == vec![2.0, 3.0, 4.0]\npub fn running_mean(values: &[f64]) -> Vec<f64> {\n    todo!()\n}"))
many(cg, [
 "Write a function that checks whether a string has all unique characters, first with extra memory and then without it.",
 "Implement a function to find the majority element in an array using the Boyer-Moore voting algorithm.",
 "Write a program to find the nth Fibonacci number using memoization, and explain its complexity.",
 "Implement a queue using two stacks.",
 "Write a function to find the lowest common ancestor of two nodes in a binary tree.",
 "Write a simple LRU cache class with get and put in O(1).",
 "Implement quicksort and explain why its worst case is O(n^2).",
 "Write a function that merges k sorted linked lists into one sorted list.",
 "Develop a command-line tool that watches a folder and prints the name of every new file that appears in it.",
 "Create a web page with a form that validates an email address and a password before submitting.",
 "Write unit tests for a function that converts Celsius to Fahrenheit.",
 "How do I read a large CSV file in chunks with pandas and compute the average of one column?",
 "What is the difference between == and === in JavaScript? Show examples where they give different results.",
 "Design a class hierarchy for a parking lot system with different vehicle sizes, and write the main classes.",
 "Write a bash script that backs up a directory to a tarball named with today's date and keeps only the last 7 backups.",
 "Write a SQL query to find the second highest salary in each department.",
 "Create a GitHub Actions workflow that runs tests on every pull request for a Python project.",
 "Build a small Flask app with a single endpoint that returns the current server time as JSON.",
 "Write a regular expression that matches UK postcodes and explain each part.",
 "Implement a trie with insert, search and startsWith methods.",
 "Given a string, write code to find the longest substring without repeating characters.",
 "Write a Python generator that yields prime numbers indefinitely.",
 "Convert this callback-based Node.js function to use async/await:\n\nfs.readFile('a.txt', 'utf8', function (err, data) {\n  if (err) return console.error(err);\n  console.log(data.length);\n});",
 "Why does this print 3 three times instead of 0, 1, 2?\n\nfor (var i = 0; i < 3; i++) {\n  setTimeout(() => console.log(i), 100);\n}",
 "Review this function and suggest improvements:\n\ndef avg(l):\n    s = 0\n    for i in range(len(l)):\n        s = s + l[i]\n    return s / len(l)",
 "Can you explain what a closure is in programming and give an example?",
 "Write a function in C that reverses a linked list in place.",
 "Create a Kubernetes deployment manifest for an app with 3 replicas and a readiness probe on /healthz.",
])
add(cg, M("Write a Python function that checks if a number is prime.", "```python\ndef is_prime(n):\n    if n < 2:\n        return False\n    for i in range(2, int(n ** 0.5) + 1):\n        if n % i == 0:\n            return False\n    return True\n```", "Can you make it faster for very large inputs?"))
add(cg, M("Implement binary search in JavaScript.", "```js\nfunction binarySearch(arr, x) {\n  let lo = 0, hi = arr.length - 1;\n  while (lo <= hi) {\n    const mid = (lo + hi) >> 1;\n    if (arr[mid] === x) return mid;\n    if (arr[mid] < x) lo = mid + 1; else hi = mid - 1;\n  }\n  return -1;\n}\n```", "Now write it recursively and add tests."))
add(cg, M("Write a function to compute the edit distance between two strings.", "Here is a dynamic programming solution in Python using a 2D table of size (m+1) x (n+1)...", "What is its space complexity, and can you reduce it to O(n)?"))
add(cg, M("How do I connect to a PostgreSQL database from Node?", "You can use the `pg` package: create a Pool with your connection settings and call pool.query().", "Show me a full example that inserts a row and handles errors."))
