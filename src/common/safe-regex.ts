/**
 * Linear-time regular expressions for JSON Schema `pattern` and `patternProperties`. JavaScript's
 * own engine backtracks: `^(a+)+$` against thirty `a`s and a `!` takes seconds, and each extra
 * character doubles it. Schema patterns are written in ECMA-262 syntax (unicode mode, as Ajv uses
 * them); this module translates them into RE2 syntax with the same meaning and runs them on RE2JS,
 * which matches in time linear in the input. What RE2 cannot express (lookaround, backreferences,
 * inline modifiers, repetition counts above 1000) is refused with a message saying why.
 *
 * ECMA-262 semantics kept by the translation: `.` excludes only the four line terminators, `\s` and
 * `\S` are ECMA's white space (including U+00A0, U+FEFF and the Unicode space separators), `\d`,
 * `\w` and `\b` are ASCII, `^` and `$` are the ends of the input, classes and `\p{…}` work on code
 * points, `[]` matches nothing and `[^]` anything.
 */
import type { CodeOptions } from 'ajv/dist/2020.js';
import { RE2JS } from 're2js';

/**
 * The largest program (RE2 instructions) one pattern may compile to. About 1 µs of compile time per
 * instruction; ample for real patterns (`^[a-z]{1,1000}$` is about 2,000), and it keeps the cost of
 * a match bounded when RE2 has to fall back from its DFA to the NFA (time ∝ input × program).
 */
export const MAX_PATTERN_PROGRAM_SIZE = 10_000;

/** Compiled patterns kept, least recently used dropped first. */
export const PATTERN_CACHE_SIZE = 1_000;

/** Why a pattern cannot be used: not a valid ECMA-262 pattern, or one the linear engine cannot run. */
export class PatternError extends Error {
  readonly reason: 'invalid' | 'unsupported' | 'too_large';

  constructor(reason: 'invalid' | 'unsupported' | 'too_large', message: string) {
    super(message);
    this.name = 'PatternError';
    this.reason = reason;
  }
}

/** A pattern compiled for the linear-time engine. */
export interface LinearPattern {
  /** True when the pattern matches somewhere in `text` (unanchored, like `RegExp.prototype.test`). */
  test(text: string): boolean;
}

/** A translated pattern and the estimated size of its program (before compiling it). */
interface Translation {
  source: string;
  estimatedSize: number;
}

const MAX_CODE_POINT = '\\x{10FFFF}';
/** Class contents matching ECMA-262 `\s`: WhiteSpace and LineTerminator. */
const WHITE_SPACE =
  '\\x{9}-\\x{D}\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}';
/** Class contents matching ECMA-262 `\S`: the complement of WHITE_SPACE, as ranges. */
const NOT_WHITE_SPACE =
  '\\x{0}-\\x{8}\\x{E}-\\x{1F}\\x{21}-\\x{9F}\\x{A1}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}' +
  `\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{FEFE}\\x{FF00}-${MAX_CODE_POINT}`;
/** ECMA-262 `.` without the `s` flag: anything but a line terminator. */
const DOT = '[^\\x{A}\\x{D}\\x{2028}\\x{2029}]';
const ANYTHING = `[\\x{0}-${MAX_CODE_POINT}]`;
const NOTHING = `[^\\x{0}-${MAX_CODE_POINT}]`;

/** `\f \n \r \t \v \0` → their code points. */
const CONTROL_ESCAPES: ReadonlyMap<string, number> = new Map([
  ['f', 0x0c],
  ['n', 0x0a],
  ['r', 0x0d],
  ['t', 0x09],
  ['v', 0x0b],
  ['0', 0],
]);

/** Long General_Category names (ECMA-262 accepts them) → the short ones RE2 knows. */
const CATEGORY_ALIASES: Readonly<Record<string, string>> = {
  Letter: 'L',
  Cased_Letter: 'LC',
  Uppercase_Letter: 'Lu',
  Lowercase_Letter: 'Ll',
  Titlecase_Letter: 'Lt',
  Modifier_Letter: 'Lm',
  Other_Letter: 'Lo',
  Mark: 'M',
  Combining_Mark: 'M',
  Nonspacing_Mark: 'Mn',
  Spacing_Mark: 'Mc',
  Enclosing_Mark: 'Me',
  Number: 'N',
  Decimal_Number: 'Nd',
  digit: 'Nd',
  Letter_Number: 'Nl',
  Other_Number: 'No',
  Punctuation: 'P',
  punct: 'P',
  Connector_Punctuation: 'Pc',
  Dash_Punctuation: 'Pd',
  Open_Punctuation: 'Ps',
  Close_Punctuation: 'Pe',
  Initial_Punctuation: 'Pi',
  Final_Punctuation: 'Pf',
  Other_Punctuation: 'Po',
  Symbol: 'S',
  Math_Symbol: 'Sm',
  Currency_Symbol: 'Sc',
  Modifier_Symbol: 'Sk',
  Other_Symbol: 'So',
  Separator: 'Z',
  Space_Separator: 'Zs',
  Line_Separator: 'Zl',
  Paragraph_Separator: 'Zp',
  Other: 'C',
  Control: 'Cc',
  cntrl: 'Cc',
  Format: 'Cf',
  Surrogate: 'Cs',
  Private_Use: 'Co',
  Unassigned: 'Cn',
};

/** Class contents (and their complement) for the properties RE2 spells differently. */
const PROPERTY_RANGES: Readonly<Record<string, { set: string; complement: string }>> = {
  Any: { set: `\\x{0}-${MAX_CODE_POINT}`, complement: '' },
  ASCII: { set: '\\x{0}-\\x{7F}', complement: `\\x{80}-${MAX_CODE_POINT}` },
};

/** An escape that stands for a set of characters, as class contents and as their complement. */
interface CharSet {
  set: string;
  complement: string;
}

/** `\d \D \w \W \s \S` as RE2 class contents (RE2's `\s` is ASCII only, ECMA-262's is not). */
const CLASS_ESCAPES: Readonly<Record<string, CharSet>> = {
  d: { set: '\\d', complement: '\\D' },
  D: { set: '\\D', complement: '\\d' },
  w: { set: '\\w', complement: '\\W' },
  W: { set: '\\W', complement: '\\w' },
  s: { set: WHITE_SPACE, complement: NOT_WHITE_SPACE },
  S: { set: NOT_WHITE_SPACE, complement: WHITE_SPACE },
};

/**
 * Translates an ECMA-262 pattern (unicode mode) into RE2 syntax with the same meaning.
 * Throws a PatternError when it is not a valid pattern or uses what RE2 cannot run.
 */
function translate(pattern: string): Translation {
  try {
    // Parsing only (V8 compiles a pattern when it first runs): linear, and the strict unicode-mode
    // grammar it enforces is what the translation below relies on.
    new RegExp(pattern, 'u');
  } catch (err) {
    const reason = (err as Error).message.replace(/^Invalid regular expression: \/.*\/u?: /s, '');
    throw new PatternError('invalid', `is not a valid ECMA-262 regular expression (unicode mode): ${reason}`);
  }
  return new Translator(pattern).run();
}

/** One pass over a pattern that V8 has accepted in unicode mode. */
class Translator {
  readonly #pattern: string;
  #at = 0;
  #out = '';
  /** Size estimate per open group: finished alternatives, the current one, and its last atom. */
  readonly #groups: Array<{ alternatives: number; current: number; last: number }> = [
    { alternatives: 0, current: 0, last: 0 },
  ];

  constructor(pattern: string) {
    this.#pattern = pattern;
  }

  run(): Translation {
    const p = this.#pattern;
    while (this.#at < p.length) {
      const c = p[this.#at]!;
      if (c === '\\') this.#escape();
      else if (c === '[') this.#class();
      else if (c === '(') this.#openGroup();
      else if (c === ')') this.#closeGroup();
      else if (c === '|') this.#alternative();
      else if (c === '*' || c === '+' || c === '?') {
        this.#at += 1;
        this.#quantifier(c, 1);
      } else if (c === '{') this.#braces();
      else if (c === '^' || c === '$' || c === '.') {
        this.#at += 1;
        this.#emit(c === '.' ? DOT : c, 1);
      } else this.#literal();
    }
    const top = this.#groups[0]!;
    return { source: this.#out, estimatedSize: top.alternatives + top.current + 2 };
  }

  #unsupported(what: string, start: number): never {
    throw new PatternError(
      'unsupported',
      `uses ${what} at character ${start + 1}, which the linear-time regular expression engine cannot run`,
    );
  }

  /** Appends an atom of `size` instructions. */
  #emit(text: string, size: number): void {
    this.#out += text;
    const group = this.#groups.at(-1)!;
    group.current += size;
    group.last = size;
  }

  #literal(): void {
    const cp = this.#pattern.codePointAt(this.#at)!;
    this.#at += cp > 0xffff ? 2 : 1;
    this.#emit(literal(cp), 1);
  }

  #openGroup(): void {
    const p = this.#pattern;
    const start = this.#at;
    if (p.startsWith('(?=', start) || p.startsWith('(?!', start)) this.#unsupported('a lookahead', start);
    if (p.startsWith('(?<=', start) || p.startsWith('(?<!', start)) this.#unsupported('a lookbehind', start);
    if (p.startsWith('(?<', start))
      this.#at = p.indexOf('>', start) + 1; // a named group: the name is not needed
    else if (p.startsWith('(?:', start)) this.#at += 3;
    else if (p.startsWith('(?', start)) this.#unsupported('an inline modifier group', start);
    else this.#at += 1;
    // Every group becomes non-capturing: only whether the pattern matches is ever asked.
    this.#out += '(?:';
    this.#groups.push({ alternatives: 0, current: 0, last: 0 });
  }

  #closeGroup(): void {
    this.#at += 1;
    const group = this.#groups.pop()!;
    this.#out += ')';
    const size = group.alternatives + group.current + 1;
    const parent = this.#groups.at(-1)!;
    parent.current += size;
    parent.last = size;
  }

  #alternative(): void {
    this.#at += 1;
    this.#out += '|';
    const group = this.#groups.at(-1)!;
    group.alternatives += group.current + 1;
    group.current = 0;
    group.last = 0;
  }

  /** `*`, `+`, `?` or `{…}` (just read as `text`), maybe lazy; `copies`: how often the atom repeats at most. */
  #quantifier(text: string, copies: number): void {
    let lazy = '';
    if (this.#pattern[this.#at] === '?') {
      lazy = '?';
      this.#at += 1;
    }
    this.#out += text + lazy;
    const group = this.#groups.at(-1)!;
    const added = group.last * (Math.max(copies, 1) - 1) + copies + 1;
    group.current += added;
    group.last += added;
  }

  #braces(): void {
    const p = this.#pattern;
    const end = p.indexOf('}', this.#at);
    const text = p.slice(this.#at, end + 1);
    this.#at = end + 1;
    const [low, high] = text.slice(1, -1).split(',');
    const copies = Number(high === undefined ? low : high === '' ? low : high);
    this.#quantifier(text, Number.isFinite(copies) ? copies : 1);
  }

  /** An escape outside a class. */
  #escape(): void {
    const p = this.#pattern;
    const start = this.#at;
    const c = p[start + 1]!;
    if (c === 'b' || c === 'B') {
      this.#at += 2;
      this.#emit(`\\${c}`, 1);
      return;
    }
    if (/[1-9]/.test(c) || c === 'k') this.#unsupported('a backreference', start);
    const set = this.#charSetEscape();
    if (set) {
      this.#emit(set.set === '' ? NOTHING : `[${set.set}]`, 1);
      return;
    }
    this.#emit(literal(this.#characterEscape()), 1);
  }

  /** `\d \D \w \W \s \S \p{…} \P{…}` at the cursor, consumed; undefined for any other escape. */
  #charSetEscape(): CharSet | undefined {
    const p = this.#pattern;
    const c = p[this.#at + 1]!;
    const simple = CLASS_ESCAPES[c];
    if (simple) {
      this.#at += 2;
      return simple;
    }
    if (c !== 'p' && c !== 'P') return undefined;
    const start = this.#at;
    const end = p.indexOf('}', start);
    this.#at = end + 1;
    const set = property(p.slice(start + 3, end), () => this.#unsupported('this Unicode property', start));
    return c === 'p' ? set : { set: set.complement, complement: set.set };
  }

  /** A character escape at the cursor (`\n`, `\x41`, `\u{1F600}`, `\.`, …), consumed: its code point. */
  #characterEscape(): number {
    const p = this.#pattern;
    const start = this.#at;
    const c = p[start + 1]!;
    this.#at += 2;
    const control = CONTROL_ESCAPES.get(c);
    if (control !== undefined) return control;
    if (c === 'c') {
      this.#at += 1;
      return p.charCodeAt(start + 2) % 32;
    }
    if (c === 'x') {
      this.#at += 2;
      return Number.parseInt(p.slice(start + 2, start + 4), 16);
    }
    if (c === 'u') return this.#unicodeEscape(start);
    if (c === 'b') return 0x08; // only inside a class
    return p.codePointAt(start + 1)!; // an identity escape: `\.`, `\/`, `\-`, …
  }

  /** `\uHHHH` (a surrogate pair of them is one code point) or `\u{H…}`, after its `\u`. */
  #unicodeEscape(start: number): number {
    const p = this.#pattern;
    if (p[start + 2] === '{') {
      const end = p.indexOf('}', start);
      this.#at = end + 1;
      return Number.parseInt(p.slice(start + 3, end), 16);
    }
    const unit = Number.parseInt(p.slice(start + 2, start + 6), 16);
    this.#at = start + 6;
    const next = /^\\u([0-9A-Fa-f]{4})/.exec(p.slice(this.#at, this.#at + 6));
    const low = next ? Number.parseInt(next[1]!, 16) : 0;
    if (unit >= 0xd800 && unit <= 0xdbff && low >= 0xdc00 && low <= 0xdfff) {
      this.#at += 6;
      return (unit - 0xd800) * 0x400 + (low - 0xdc00) + 0x10000;
    }
    return unit;
  }

  /** A character class `[…]` (unicode mode: no nesting, class escapes cannot bound a range). */
  #class(): void {
    const p = this.#pattern;
    this.#at += 1;
    const negated = p[this.#at] === '^';
    if (negated) this.#at += 1;
    let contents = '';
    while (p[this.#at] !== ']') {
      const set = p[this.#at] === '\\' ? this.#charSetEscape() : undefined;
      if (set) {
        contents += set.set;
        continue;
      }
      const from = this.#classCharacter();
      if (p[this.#at] === '-' && p[this.#at + 1] !== ']') {
        this.#at += 1;
        contents += `${literal(from)}-${literal(this.#classCharacter())}`;
      } else contents += literal(from);
    }
    this.#at += 1;
    if (contents === '') this.#emit(negated ? ANYTHING : NOTHING, 1);
    else this.#emit(`[${negated ? '^' : ''}${contents}]`, 1);
  }

  #classCharacter(): number {
    const p = this.#pattern;
    if (p[this.#at] === '\\') return this.#characterEscape();
    const cp = p.codePointAt(this.#at)!;
    this.#at += cp > 0xffff ? 2 : 1;
    return cp;
  }
}

/** A code point as RE2 syntax that means exactly it, inside or outside a class. */
function literal(cp: number): string {
  if ((cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a)) {
    return String.fromCodePoint(cp);
  }
  return `\\x{${cp.toString(16).toUpperCase()}}`;
}

/** `\p{…}` contents in ECMA-262 spelling → RE2 class contents; `unsupported` throws. */
function property(spec: string, unsupported: () => never): CharSet {
  const [key, value] = spec.includes('=') ? spec.split('=') : [undefined, spec];
  let name = value!;
  if (key === 'General_Category' || key === 'gc' || key === undefined) {
    name = CATEGORY_ALIASES[name] ?? name;
    const ranges = key === undefined ? PROPERTY_RANGES[name] : undefined;
    if (ranges) return ranges;
  } else if (key !== 'Script' && key !== 'sc') unsupported(); // Script_Extensions has no RE2 equivalent
  // RE2JS knows the categories, the scripts and most binary properties (Alphabetic, White_Space,
  // Emoji, …) from the same Unicode tables as V8; a name it does not know fails the compilation.
  return { set: `\\p{${name}}`, complement: `\\P{${name}}` };
}

/** Compiles a translation; RE2 refusing it (e.g. a repetition count above 1000) is `unsupported`. */
function compile(translation: Translation): RE2JS {
  if (translation.estimatedSize > MAX_PATTERN_PROGRAM_SIZE) throw tooLarge(translation.estimatedSize);
  let program: RE2JS;
  try {
    program = RE2JS.compile(translation.source);
  } catch (err) {
    const reason = (err as Error).message.replace(/^error parsing regexp: /, '');
    const hint = /repeat count/.test(reason) ? ' (repetitions are limited to 1000)' : '';
    throw new PatternError(
      'unsupported',
      `cannot be run by the linear-time regular expression engine: ${reason}${hint}`,
    );
  }
  if (program.programSize() > MAX_PATTERN_PROGRAM_SIZE) throw tooLarge(program.programSize());
  return program;
}

function tooLarge(size: number): PatternError {
  return new PatternError(
    'too_large',
    `is too large for the linear-time regular expression engine (about ${size} instructions, at most ${MAX_PATTERN_PROGRAM_SIZE})`,
  );
}

/** Compiled programs by pattern, least recently used first (a Map iterates in insertion order). */
const programs = new Map<string, RE2JS>();
/** The pattern used last: testing it again does not need to refresh its place. */
let lastUsed: string | undefined;
/**
 * Patterns that cannot be used, with why, bounded like the programs: the compatibility checker
 * asks about the same few patterns of an old version again and again, and each answer would
 * otherwise translate (and maybe compile) the pattern anew.
 */
const refused = new Map<string, PatternError>();

/** The program of a pattern, from the cache or compiled now (and cached). Throws a PatternError. */
function program(pattern: string): RE2JS {
  const hit = programs.get(pattern);
  if (hit) {
    if (lastUsed !== pattern) {
      programs.delete(pattern);
      programs.set(pattern, hit);
      lastUsed = pattern;
    }
    return hit;
  }
  const known = refused.get(pattern);
  if (known) throw known;
  let fresh: RE2JS;
  try {
    fresh = compile(translate(pattern));
  } catch (err) {
    if (err instanceof PatternError) {
      refused.set(pattern, err);
      if (refused.size > PATTERN_CACHE_SIZE) refused.delete(refused.keys().next().value!);
    }
    throw err;
  }
  programs.set(pattern, fresh);
  lastUsed = pattern;
  if (programs.size > PATTERN_CACHE_SIZE) programs.delete(programs.keys().next().value!);
  return fresh;
}

/** How many compiled programs the cache holds (at most PATTERN_CACHE_SIZE). */
export function compiledPatternCount(): number {
  return programs.size;
}

/**
 * The estimated program size of a pattern, without compiling it (to hold a whole document's
 * patterns to a budget before paying for them). Throws a PatternError when the pattern is not
 * valid or uses what the engine cannot run.
 */
export function estimatePatternSize(pattern: string): number {
  return translate(pattern).estimatedSize;
}

/** Why a pattern cannot be used (its message reads after the pattern's location), or undefined. */
export function patternProblem(pattern: string): PatternError | undefined {
  try {
    program(pattern);
    return undefined;
  } catch (err) {
    if (err instanceof PatternError) return err;
    throw err;
  }
}

/** Whether `pattern` matches somewhere in `text`; undefined when the pattern cannot be used. */
export function matchesPattern(pattern: string, text: string): boolean | undefined {
  let found: RE2JS;
  try {
    found = program(pattern);
  } catch (err) {
    if (err instanceof PatternError) return undefined;
    throw err;
  }
  return found.test(text);
}

/**
 * A pattern that holds only its source and finds its program in the bounded cache at each test
 * (compiling it again if it was dropped): Ajv keeps every pattern object it was ever given, so these
 * must stay small; the programs, with the DFA states they build while matching, are what the cache bounds.
 */
class CachedPattern implements LinearPattern {
  readonly #pattern: string;

  constructor(pattern: string) {
    this.#pattern = pattern;
  }

  test(text: string): boolean {
    return program(this.#pattern).test(text);
  }

  /** Ajv keys the patterns of its generated code by this: distinct for distinct patterns. */
  toString(): string {
    return `/${this.#pattern}/u`;
  }
}

type RegExpEngine = NonNullable<CodeOptions['regExp']>;

/**
 * Ajv's `code.regExp`: every `pattern` and `patternProperties` key of a schema compiled with it is
 * matched in linear time. Throws a PatternError naming the pattern when the engine cannot run it,
 * which makes the compilation fail.
 */
export const linearRegExp: RegExpEngine = Object.assign(
  (pattern: string, flags: string): LinearPattern => {
    const problem =
      flags === '' || flags === 'u'
        ? patternProblem(pattern)
        : new PatternError('unsupported', `uses the flags "${flags}"`);
    if (problem) {
      throw new PatternError(
        problem.reason,
        `the regular expression ${JSON.stringify(pattern)} ${problem.message}`,
      );
    }
    return new CachedPattern(pattern);
  },
  { code: 'linearRegExp' },
);
