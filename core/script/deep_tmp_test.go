package script
import ("testing";"context")
func TestDeepTmp(t *testing.T){
	s := compile(t, `function transform(e) { let a = {}; for (let i = 0; i < 1e6; i++) a = {a}; return {type: "x", data: a} }`, Options{Timeout: 5e9})
	_, err := s.Transform(context.Background(), testEvent(), Context{})
	t.Log(err)
}
