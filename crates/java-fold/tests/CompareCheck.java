// Reads lines "A B" (each a comma-separated list of hex code points, "-" for the empty string)
// and prints, per line, the sign of A.compareToIgnoreCase(B) and A.equalsIgnoreCase(B).
// Driven by tests/against_java.rs.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

public class CompareCheck {
    static String decode(String field) {
        StringBuilder s = new StringBuilder();
        if (!field.equals("-")) {
            for (String cp : field.split(",")) {
                s.appendCodePoint(Integer.parseInt(cp, 16));
            }
        }
        return s.toString();
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.split(" ");
            String a = decode(f[0]);
            String b = decode(f[1]);
            out.append(Integer.signum(String.CASE_INSENSITIVE_ORDER.compare(a, b)))
                .append(' ')
                .append(a.equalsIgnoreCase(b))
                .append('\n');
        }
        System.out.print(out);
    }
}
